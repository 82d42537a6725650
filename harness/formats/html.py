"""The HTML report: one self-contained page (inline CSS and SVG, no script, no fetch).

It shows the verdict table; per scenario its steps, per probe and folio a picture, W, T and
E across the probes as a small chart, and the diff; for any other case kind (selftests,
fuzz, mutate, nightly cells) its message, subtests and console excerpt; for a night the
trend across nights.

The folio picture: the folio's pages as two strips, the model's above the kernel's, each
page coloured by its mapcount P; above each strip a bar showing how the folio is mapped (a
PMD across the whole folio, a tick per PTE-mapped page); vertical lines where the pages'
virtual addresses cross a VMA boundary (solid) or a page-table boundary, every 2 MiB
(dashed); red marks under pages whose P differs.
"""

from __future__ import annotations

import html
import itertools
import re
from pathlib import Path
from typing import Any

from harness import cache
from harness.formats.cases import Case, RunReport, folio_name, probe_name

PAGE = 4096
PMD_SIZE = 2 << 20
STRIP_WIDTH = 720.0

STATUS_COLOUR = {
    "pass": "#1a7f37", "fail": "#cf222e", "timeout": "#cf222e", "crash": "#8b0000",
    "error": "#bc4c00", "environment": "#9a6700", "skip": "#6e7781", "not-run": "#6e7781",
    "skipped": "#6e7781",
}  # fmt: skip
# P -> colour: absent, 0, 1, 2, 3, 4+; negative (an underflow) stands out in amber.
P_COLOURS = ["#ffffff", "#c4c9d0", "#93c5fd", "#3b82f6", "#1d4ed8", "#172554"]
P_NEGATIVE = "#f59e0b"
OUT_OF_RANGE = "url(#outside)"  # hatched: the probe did not cover these pages
# Defined once per page; every folio picture's strips refer to it.
DEFS = ('<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>'
        '<pattern id="outside" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#d0d7de" stroke-width="2"/></pattern>'
        "</defs></svg>")  # fmt: skip

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1180px;
padding:16px 24px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:16px 0 4px}h4{font-size:14px;margin:10px 0 2px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #d0d7de;padding:2px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}
.badge{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-weight:600;
font-size:12px;text-transform:uppercase}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:8px;overflow-x:auto;font-size:12px;
max-height:420px}
.folio{display:flex;gap:16px;align-items:flex-start;margin:6px 0 12px;flex-wrap:wrap}
.counts td{font-family:ui-monospace,monospace;font-size:12px}.bad{color:#cf222e;font-weight:600}
.meta td:first-child{color:#57606a}.legend span{display:inline-block;width:12px;height:12px;
border:1px solid #8c959f;vertical-align:middle;margin:0 3px 0 10px}
.probe{border-left:3px solid #d0d7de;padding-left:12px;margin:10px 0}
ul.sub{margin:2px 0 2px 18px;padding:0}ul.sub li{list-style:none}
ul.verdicts{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:2px 16px;
padding:0;margin:6px 0}ul.verdicts li{list-style:none;font-size:13px}
.why{color:#57606a;font-size:12px;margin-left:8px}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def anchor(name: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def badge(status: str) -> str:
    colour = STATUS_COLOUR.get(status, "#6e7781")
    return f'<span class="badge" style="background:{colour}">{esc(status)}</span>'


def p_colour(value: int | None) -> str:
    if value is None:
        return P_COLOURS[0]
    if value < 0:
        return P_NEGATIVE
    return P_COLOURS[min(value + 1, len(P_COLOURS) - 1)]


def _expand(runs: list[list[Any]] | None) -> dict[int, int | None]:
    """[[first, count, value]] -> {index: value}."""
    out: dict[int, int | None] = {}
    for first, count, value in runs or []:
        for k in range(count):
            out[first + k] = value
    return out


def _runs_of(values: list[Any]) -> list[tuple[int, int, Any]]:
    """Consecutive equal values -> (first, count, value), to draw one rect per run."""
    out: list[tuple[int, int, Any]] = []
    first = 0
    for value, group in itertools.groupby(values):  # C-speed: a report draws ~10^6 pages
        count = len(list(group))
        out.append((first, count, value))
        first += count
    return out


def _va(text: str | int) -> int:
    return text if isinstance(text, int) else int(str(text), 16)


# --- the folio picture -----------------------------------------------------------------------


def folio_svg(folio: dict[str, Any], vmas: list[dict[str, Any]]) -> str:
    """The folio's pages, model above kernel; see the module docstring for the legend."""
    order = int(folio.get("order") or 0)
    npages = 1 << order
    expected, observed = folio.get("expected") or {}, folio.get("observed") or {}
    want, got = _expand(expected.get("P")), _expand(observed.get("P"))
    in_range = set(want)
    first = min(want) if want else 0
    page0_va = _va(folio["va"]) - first * PAGE  # the folio is mapped linearly around va
    cell = max(STRIP_WIDTH / npages, 0.5) if npages > 32 else 22.0
    left = 56.0
    width = max(left + cell * npages + 8, left + 110)  # room for the address below
    y_model, y_kernel, strip_h, bar_h = 22.0, 62.0, 18.0, 7.0
    height = 112.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="folio-svg" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.1f} {height:.0f}" role="img" '
           f'aria-label="{esc(folio_name(folio))}">']  # fmt: skip
    out.append(f'<text x="0" y="{y_model + 13}" font-size="11">model</text>')
    out.append(f'<text x="0" y="{y_kernel + 13}" font-size="11">kernel</text>')

    def strip(y: float, values: dict[int, int | None], present_only: bool) -> None:
        get = values.get
        row = [
            "out" if i not in in_range else None if present_only and i not in values else get(i)
            for i in range(npages)
        ]
        for start, count, value in _runs_of(row):
            fill = OUT_OF_RANGE if value == "out" else p_colour(value)
            what = "outside the probe" if value == "out" else (
                "not present" if value is None else f"P={value}")  # fmt: skip
            pages = f"page {start}" if count == 1 else f"pages {start}..{start + count - 1}"
            out.append(
                f'<rect x="{left + start * cell:.2f}" y="{y}" width="{count * cell:.2f}" '
                f'height="{strip_h}" fill="{fill}"><title>{pages}: {what}</title></rect>'
            )
        out.append(f'<rect x="{left}" y="{y}" width="{npages * cell:.2f}" height="{strip_h}" '
                   'fill="none" stroke="#57606a" stroke-width="0.8"/>')  # fmt: skip

    def mapping_bar(y: float, values: dict[int, int | None], entire: int) -> None:
        if entire > 0:
            out.append(
                f'<rect x="{left}" y="{y}" width="{npages * cell:.2f}" height="{bar_h}" '
                f'fill="#8250df"><title>PMD-mapped (E={entire})</title></rect>'
            )
            out.append(f'<text x="{left + 3}" y="{y + bar_h - 0.5}" font-size="8" '
                       f'fill="#fff">PMD \u00d7{entire}</text>')  # fmt: skip
        ptes = [i for i, v in sorted(values.items()) if v is not None and v > entire]
        for start, count, _ in _runs_of([i - n for n, i in enumerate(ptes)]):
            a = ptes[start]
            out.append(
                f'<rect x="{left + a * cell:.2f}" y="{y + (bar_h / 2 if entire else 0)}" '
                f'width="{count * cell:.2f}" height="{bar_h / 2 if entire else bar_h}" '
                f'fill="#0a7ea4"><title>PTE-mapped: pages {a}..{a + count - 1}</title></rect>'
            )

    e_model = int(expected.get("E") or 0)
    e_kernel = observed.get("E")
    if e_kernel is None:  # unpatched kernel: smaps' PMD mapping is all there is
        e_kernel = 1 if observed.get("pmd_mapped") else 0
    mapping_bar(y_model - bar_h - 1, want, e_model)
    strip(y_model, want, present_only=False)
    mapping_bar(y_kernel - bar_h - 1, got, int(e_kernel))
    strip(y_kernel, got, present_only=True)

    # Red marks under pages whose P differs between the model and the kernel.
    diff = [i for i in sorted(in_range) if want.get(i) != got.get(i)]
    for start, count, _ in _runs_of([i - n for n, i in enumerate(diff)]):
        a = diff[start]
        out.append(
            f'<rect class="p-diff" x="{left + a * cell:.2f}" y="{y_kernel + strip_h + 2}" '
            f'width="{max(count * cell, 2):.2f}" height="5" fill="#cf222e">'
            f"<title>P differs at pages {a}..{a + count - 1}</title></rect>"
        )

    top, bottom = y_model - bar_h - 3, y_kernel + strip_h + 9
    end_va = page0_va + npages * PAGE
    # One line per boundary: where two VMAs touch, one's end is the other's start.
    edges = sorted({_va(v[k]) for v in vmas for k in ("start", "end")})
    for edge in edges:
        if page0_va < edge < end_va:
            x = left + (edge - page0_va) // PAGE * cell
            out.append(
                f'<line class="vma-edge" x1="{x:.2f}" y1="{top}" x2="{x:.2f}" y2="{bottom}" '
                f'stroke="#cf222e" stroke-width="1.5"><title>VMA boundary at 0x{edge:x}'
                "</title></line>"
            )
    boundary = (page0_va // PMD_SIZE + 1) * PMD_SIZE
    while boundary < end_va:
        x = left + (boundary - page0_va) // PAGE * cell
        out.append(
            f'<line class="pt-edge" x1="{x:.2f}" y1="{top}" x2="{x:.2f}" y2="{bottom}" '
            f'stroke="#24292f" stroke-width="1.2" stroke-dasharray="3,2"><title>page-table '
            f"boundary at 0x{boundary:x}</title></line>"
        )
        boundary += PMD_SIZE
    label_y = height - 4
    wide = npages * cell > 160  # room for both ends' labels
    first_label = f"0 (0x{page0_va:x})" if wide else f"0x{page0_va:x}"
    out.append(f'<text x="{left}" y="{label_y}" font-size="10">{first_label}</text>')
    if wide:
        out.append(f'<text x="{left + npages * cell:.2f}" y="{label_y}" font-size="10" '
                   f'text-anchor="end">{npages - 1}</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def _counts_table(folio: dict[str, Any]) -> str:
    expected, observed = folio.get("expected") or {}, folio.get("observed") or {}
    rows = []
    for name, obs_key in (("T", "T"), ("E", "E"), ("W", "W"), ("W (audit)", "W_audit"),
                          ("V", "V"), ("order", "order")):  # fmt: skip
        want = expected.get("W" if obs_key == "W_audit" else obs_key)
        got = observed.get(obs_key)
        cls = ' class="bad"' if got is not None and got != want else ""
        shown = "\u2013" if got is None else got
        rows.append(f"<tr><td>{esc(name)}</td><td>{esc(want)}</td><td{cls}>{esc(shown)}</td></tr>")
    head = observed.get("head_pfn")
    rows.append(f"<tr><td>head pfn</td><td></td><td>{esc(head)}</td></tr>")
    return ('<table class="counts"><tr><th></th><th>model</th><th>kernel</th></tr>'
            + "".join(rows) + "</table>")  # fmt: skip


def _legend() -> str:
    items = [("absent", P_COLOURS[0]), ("P=0", P_COLOURS[1]), ("P=1", P_COLOURS[2]),
             ("P=2", P_COLOURS[3]), ("P=3", P_COLOURS[4]), ("P\u22654", P_COLOURS[5]),
             ("P<0", P_NEGATIVE), ("outside the probe", OUT_OF_RANGE),
             ("PMD", "#8250df"), ("PTE", "#0a7ea4"), ("P differs", "#cf222e")]  # fmt: skip
    hatch = "repeating-linear-gradient(45deg,#fff 0 3px,#d0d7de 3px 5px)"
    spans = "".join(
        f'<span style="background:{hatch if c == OUT_OF_RANGE else c}"></span>{esc(n)}'
        for n, c in items
    )
    return (f'<p class="legend">{spans}; red line: VMA boundary; dashed line: page-table '
            "boundary (2 MiB)</p>")


# --- W, T, E across a scenario's probes ------------------------------------------------------

SERIES = (("W", "#8250df"), ("T", "#0969da"), ("E", "#1a7f37"))


def counts_chart(scenario: dict[str, Any]) -> str:
    """One small chart per folio (by process and address): W, T and E at each probe, the
    model's as dashed lines, the kernel's as solid lines with dots."""
    probes = scenario.get("probes") or []
    # T, E and W belong to the folio, not to a process or an address: a forked folio seen
    # by the parent and then by the child, or a folio half mremapped away, is one line. The
    # guest's head PFN names it; without one, the address its page 0 would have.
    keys: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    if len(probes) < 2:
        return ""  # one probe is no trend: the table beside each picture has the values
    for n, probe in enumerate(probes):
        for folio in probe.get("folios") or []:
            # Large folios only: the zero page and small folios have T = P, E = 0, W = 1.
            if (folio.get("expected") or {}).get("kind") == "zero" or not folio.get("order"):
                continue
            runs = (folio.get("expected") or {}).get("P") or [[0]]
            heads = (folio.get("observed") or {}).get("head_pfn") or []
            key = (f"folio pfn {heads[0]}" if len(heads) == 1
                   else f"folio at 0x{_va(folio['va']) - runs[0][0] * PAGE:x}")  # fmt: skip
            points = keys.setdefault(f"{key}, order {folio['order']}", [])
            if not points or points[-1][0] != n:
                points.append((n, folio))
    if not probes or not keys:
        return ""
    charts = []
    labels = [p.get("label", "") for p in probes]
    for title, points in list(keys.items())[:8]:
        charts.append(_one_chart(title, labels, points))
    more = f"<p>({len(keys) - 8} more folios not charted)</p>" if len(keys) > 8 else ""
    legend = " ".join(f'<b style="color:{c}">{n}</b>' for n, c in SERIES)
    return (f'<div class="charts"><h4>{legend} across the probes (dashed: model, solid: '
            f"kernel)</h4>{''.join(charts)}{more}</div>")


def _one_chart(title: str, labels: list[str], points: list[tuple[int, dict[str, Any]]]) -> str:
    w, h, pad_l, pad_b, pad_t = 300.0, 130.0, 28.0, 30.0, 16.0
    values = [v for _, f in points for side in ("expected", "observed")
              for k, _ in SERIES if isinstance(v := (f.get(side) or {}).get(k), int)]  # fmt: skip
    top = max([1, *values])
    nx = max(len(labels) - 1, 1)

    def xy(i: int, v: int) -> tuple[float, float]:
        return (pad_l + (w - pad_l - 8) * i / nx, pad_t + (h - pad_t - pad_b) * (1 - v / top))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w:.0f}" '
           f'height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}">',
           f'<text x="{pad_l}" y="11" font-size="10">{esc(title)}</text>',
           f'<line x1="{pad_l}" y1="{h - pad_b}" x2="{w - 8}" y2="{h - pad_b}" stroke="#8c959f"/>',
           f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{h - pad_b}" stroke="#8c959f"/>',
           f'<text x="{pad_l - 4}" y="{pad_t + 4}" font-size="9" text-anchor="end">{top}</text>',
           f'<text x="{pad_l - 4}" y="{h - pad_b}" font-size="9" '
           'text-anchor="end">0</text>']  # fmt: skip
    for i, label in enumerate(labels):
        x, _ = xy(i, 0)
        out.append(f'<text x="{x:.1f}" y="{h - pad_b + 11}" font-size="8" text-anchor="middle">'
                   f"{esc(label[:10])}</text>")  # fmt: skip
    for k, colour in SERIES:
        for side, dash in (("expected", ' stroke-dasharray="4,3"'), ("observed", "")):
            pts = [(i, v) for i, f in points
                   if isinstance(v := (f.get(side) or {}).get(k), int)]  # fmt: skip
            if not pts:
                continue
            coords = " ".join("{:.1f},{:.1f}".format(*xy(i, v)) for i, v in pts)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                       f'stroke-width="1.6"{dash}><title>{k} ({side})</title>'
                       "</polyline>")  # fmt: skip
            who = "kernel" if side == "observed" else "model"
            fill = colour if side == "observed" else "#ffffff"
            for i, v in pts:  # dots too: a folio seen by one probe has no line
                x, y = xy(i, v)
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{fill}" '
                           f'stroke="{colour}"><title>{k}={v} ({who})</title>'
                           "</circle>")  # fmt: skip
    out.append("</svg>")
    return "".join(out)


# --- the night's trend -----------------------------------------------------------------------


def trend_chart(nights: list[dict[str, Any]]) -> str:
    """Stacked bars of cell verdicts per night, and a cells x nights grid."""
    if not nights:
        return ""
    order = ["pass", "fail", "timeout", "crash", "error", "environment", "skip", "not-run"]
    bar_w, h, pad_b = 28.0, 160.0, 40.0
    w = 40 + bar_w * 1.5 * len(nights)
    most = max([1, *(len(n["cells"]) for n in nights)])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" width="{w:.0f}" '
           f'height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}">']  # fmt: skip
    for n, night in enumerate(nights):
        x = 30 + n * bar_w * 1.5
        y = h - pad_b
        counts: dict[str, int] = {}
        for cell in night["cells"]:
            v = {"regression": "fail", "found": "fail", "skipped": "skip"}.get(
                cell["verdict"], cell["verdict"]
            )
            v = v if v in order else "error"
            counts[v] = counts.get(v, 0) + 1
        for verdict in order:
            if not counts.get(verdict):
                continue
            bh = (h - pad_b - 10) * counts[verdict] / most
            y -= bh
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w}" height="{bh:.1f}" '
                       f'fill="{STATUS_COLOUR[verdict]}"><title>{esc(night["date"])}: '
                       f"{counts[verdict]} {verdict}</title></rect>")  # fmt: skip
        out.append(f'<text x="{x + bar_w / 2:.1f}" y="{h - pad_b + 12}" font-size="9" '
                   f'text-anchor="middle">{esc(night["date"][-5:])}</text>')  # fmt: skip
    out.append("</svg>")
    names = sorted({c["name"] for night in nights for c in night["cells"]})
    head = "".join(f"<th>{esc(n['date'][-5:])}</th>" for n in nights)
    rows = []
    for name in names:
        tds = []
        for night in nights:
            verdict = next((c["verdict"] for c in night["cells"] if c["name"] == name), "")
            colour = STATUS_COLOUR.get(verdict, "#ffffff" if not verdict else "#cf222e")
            tds.append(f'<td title="{esc(verdict)}" style="background:{colour}"></td>')
        rows.append(f"<tr><td>{esc(name)}</td>{''.join(tds)}</tr>")
    grid = f'<table class="trend-grid"><tr><th>cell</th>{head}</tr>{"".join(rows)}</table>'
    return f'<h2 id="trend">Trend across {len(nights)} nights</h2>{"".join(out)}{grid}'


# --- the page --------------------------------------------------------------------------------


def _subtests(case: Case, depth: int = 0) -> str:
    if not case.subtests or depth > 3:
        return ""
    items = []
    for sub in case.subtests:
        why = f" \u2014 {esc(sub.message)}" if sub.message else ""
        nested = _subtests(sub, depth + 1)
        items.append(f"<li>{badge(sub.status)} {esc(sub.name)}{why}{nested}</li>")
    return f'<ul class="sub">{"".join(items)}</ul>'


def _steps_table(scenario: dict[str, Any]) -> str:
    rows = []
    for st in scenario.get("steps") or []:
        bad = st.get("errno") != st.get("expected_errno")
        cls = ' class="bad"' if bad else ""
        rows.append(
            f"<tr><td>{esc(st['index'])}</td><td>{esc(st['op'])}</td>"
            f"<td>{esc(Path(str(st.get('where'))).name)}</td>"
            f"<td>{esc(st.get('expected_errno') or 'success')}</td>"
            f"<td{cls}>{esc(st.get('errno') or 'success')}</td></tr>"
        )
    if not rows:
        return ""
    return ("<h4>Steps</h4><table><tr><th>#</th><th>op</th><th>where</th><th>model</th>"
            f"<th>kernel</th></tr>{''.join(rows)}</table>")  # fmt: skip


def rmap_table(rmap: dict[str, dict[str, int]], title: str) -> str:
    """The kernel series' rmap calls and the pages they covered, per operation: what
    batching buys (pages per call)."""
    if not rmap:
        return ""
    rows = "".join(
        f"<tr><td>{esc(op)}</td><td>{c.get('calls', 0)}</td><td>{c.get('pages', 0)}</td>"
        f"<td>{c['pages'] / c['calls']:.2f}</td></tr>" if c.get("calls") else
        f"<tr><td>{esc(op)}</td><td>0</td><td>{c.get('pages', 0)}</td><td>\u2013</td></tr>"
        for op, c in rmap.items()
    )  # fmt: skip
    return (f"<h4>{esc(title)}</h4><table class=\"rmap\"><tr><th>operation</th><th>calls</th>"
            f"<th>pages</th><th>pages/call</th></tr>{rows}</table>")  # fmt: skip


def _recalls_table(scenario: dict[str, Any]) -> str:
    rows = []
    for r in scenario.get("recalls") or []:
        bad = r.get("verdict") != "pass"
        cls = ' class="bad"' if bad else ""
        got = r.get("observed") or "\u2013"
        rows.append(f"<tr><td>{esc(r['label'])}</td><td>{esc(r.get('expected'))}</td>"
                    f"<td{cls}>{esc(got)}</td></tr>")  # fmt: skip
    if not rows:
        return ""
    return ("<h4>Recalls</h4><table><tr><th>label</th><th>model</th><th>kernel</th></tr>"
            f"{''.join(rows)}</table>")  # fmt: skip


def _probe_section(probe: dict[str, Any]) -> str:
    vmas = probe.get("vmas") or []
    vma_text = ", ".join(
        f"{v['start']}-{v['end']} (rss {v.get('rss_kb')} kB, PMD {v.get('pmd_mapped_kb')} kB)"
        for v in vmas
    ) or "none reported"
    problems = "".join(f"<li>{esc(p)}</li>" for p in probe.get("problems") or [])
    parts = [f'<div class="probe" data-probe="{esc(probe["label"])}">',
             f"<h4>{badge(probe.get('verdict', 'error'))} {esc(probe_name(probe))} "
             f"<small>{esc(Path(str(probe.get('where'))).name)}</small></h4>",
             f"<div>VMAs: {esc(vma_text)}</div>",
             f'<ul class="bad">{problems}</ul>' if problems else ""]  # fmt: skip
    for folio in probe.get("folios") or []:
        fproblems = "".join(f"<li>{esc(p)}</li>" for p in folio.get("problems") or [])
        parts.append(
            f'<div class="folio" data-folio="{esc(folio["va"])}"><div>'
            f"<div>{badge(folio.get('verdict', 'error'))} {esc(folio_name(folio))} "
            f"({esc((folio.get('expected') or {}).get('kind', '?'))})</div>"
            f"{folio_svg(folio, vmas)}"
            + (f'<ul class="bad">{fproblems}</ul>' if fproblems else "")
            + f"</div>{_counts_table(folio)}</div>"
        )
    parts.append("</div>")
    return "".join(parts)


def _case_section(case: Case, scenario: dict[str, Any] | None) -> str:
    parts = [f'<section class="case" id="{anchor(case.name)}" data-case="{esc(case.name)}" '
             f'data-status="{esc(case.status)}">',
             f"<h2>{badge(case.status)} {esc(case.name)}</h2>"]  # fmt: skip
    if case.message:
        parts.append(f"<p>{esc(case.message)}</p>")
    if scenario is not None:
        parts.append(_steps_table(scenario))
        parts.append(counts_chart(scenario))
        parts.append(_recalls_table(scenario))
        parts += [_probe_section(p) for p in scenario.get("probes") or []]
        parts.append(rmap_table(scenario.get("rmap") or {}, "rmap calls during the scenario"))
    else:
        parts.append(_subtests(case))
    if case.diagnostics:
        parts.append(f"<h4>Diff</h4><pre>{esc(chr(10).join(case.diagnostics))}</pre>")
    if case.console:
        parts.append(f"<h4>Console</h4><pre>{esc(case.console)}</pre>")
    if case.log:
        parts.append(f'<p>Full log: <a href="{esc(case.log)}">{esc(case.log)}</a></p>')
    parts.append("</section>")
    return "".join(parts)


def _header(report: RunReport) -> str:
    wall = f"{report.seconds:.1f} s" if report.seconds is not None else ""
    rows = [("run", report.run_id), ("kind", report.kind), ("config", report.title),
            ("started", report.started or ""), ("wall time", wall)]  # fmt: skip
    for k in report.kernels:
        series = f" + {k.series} ({len(k.patches)} patches)" if k.series else " (no series)"
        built = "cached" if k.cached else (f"built in {k.build_seconds:.0f} s"
                                           if k.build_seconds else "")  # fmt: skip
        label = "kernel" if k.label == "kernel" else f"kernel {k.label}"
        parts = [f"Linux {k.version}{series}", k.config,
                 f"build {k.build_key} {built}".replace("  ", " ").strip()]  # fmt: skip
        rows.append((label, "; ".join(p for p in parts if p and p != "build")))
    if report.machine:
        m = report.machine
        known = [f"QEMU {m['accel']}" if m.get("accel") else "QEMU",
                 f"{m['cpus_requested']} CPUs" if m.get("cpus_requested") else "",
                 f"{m['memory_mb']} MiB" if m.get("memory_mb") else "",
                 f"guest {m['uname']}" if m.get("uname") else "",
                 m.get("outcome") or ""]  # fmt: skip
        rows.append(("machine", ", ".join(k for k in known if k)))
    if report.error:
        rows.append(("error", report.error))
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows if v)
    return (f"<h1>folio-harness {esc(report.kind)} report {badge(report.verdict)}</h1>"
            f'<table class="meta">{body}</table>')  # fmt: skip


def _verdict_table(report: RunReport) -> str:
    """Every case in a compact grid (a run has dozens); what did not pass first, with why."""
    ranked = sorted(report.cases, key=lambda c: c.status == "pass")  # stable: run order kept
    items = []
    for case in ranked:
        why = f'<div class="why">{esc(case.message)}</div>' if case.message else ""
        items.append(f'<li class="verdict">{badge(case.status)} <a href="#{anchor(case.name)}">'
                     f"{esc(case.name)}</a>{why}</li>")  # fmt: skip
    counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts().items()))
    return (f'<h2 id="verdicts">Verdicts ({esc(counts) or "no cases"})</h2>'
            f'<ul class="verdicts">{"".join(items)}</ul>')


def render(report: RunReport) -> str:
    scenarios = {s["name"]: s for s in report.scenarios}
    sections = [_case_section(c, scenarios.get(c.name)) for c in report.cases]
    files = "".join(f'<li><a href="{esc(f)}">{esc(f)}</a></li>' for f in report.files)
    legend = _legend() if report.scenarios else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>folio-harness {esc(report.run_id)}: {esc(report.verdict)}</title>"
        f"<style>{CSS}</style></head><body>{DEFS}"
        f"{_header(report)}{trend_chart(report.nights)}{_verdict_table(report)}"
        f"{rmap_table(report.rmap_stats, 'rmap calls over the run (the series rmap_stats)')}"
        f"{legend}"
        f"{''.join(sections)}"
        + (f"<h2>Files</h2><ul>{files}</ul>" if files else "")
        + "</body></html>\n"
    )


def write(run_dir: Path, report: RunReport) -> Path:
    path = run_dir / "report.html"
    cache.write_atomic(path, render(report))
    return path
