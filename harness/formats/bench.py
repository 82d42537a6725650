"""The benchmark table: guest-tests/mmbench.c's repeats, per operation and per kernel.

mmbench prints one line per timed repeat ("# mmbench op=<op> scan=<scan> rep=<i> us=<t>
rmap_calls=<n> ... ptes_read=<n> ..."). Timings under TCG are noisy, so the table gives the
median and the spread (max - min, as a share of the median) of each operation on each kernel,
the ratio of the last kernel's median to the one before it, and the medians of the counters,
which do not depend on timing (the rmap calls, and the PTEs the W scans read).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

PREFIX = "# mmbench "
COUNTERS = ("rmap_calls", "ptes_read", "adjust_ptes_read")


@dataclass
class Series:
    """The repeats of one operation (and scan mode) on one kernel."""

    us: list[float] = field(default_factory=list)
    counters: dict[str, list[int]] = field(default_factory=dict)

    def median(self) -> float:
        return statistics.median(self.us)

    def spread(self) -> float:
        """max - min over the median: how far apart the repeats fell."""
        mid = self.median()
        return (max(self.us) - min(self.us)) / mid if mid else 0.0

    def counter(self, name: str) -> int | None:
        values = self.counters.get(name)
        return int(statistics.median(values)) if values else None


def parse(lines: Iterable[str]) -> dict[tuple[str, str], Series]:
    """(op, scan) -> repeats, from mmbench's output; other lines are ignored."""
    out: dict[tuple[str, str], Series] = {}
    for line in lines:
        if not line.startswith(PREFIX):
            continue
        fields = dict(tok.partition("=")[::2] for tok in line[len(PREFIX) :].split())
        try:
            key = (fields["op"], fields.get("scan", "-"))
            series = out.setdefault(key, Series())
            series.us.append(float(fields["us"]))
        except (KeyError, ValueError):
            continue
        for name in COUNTERS:
            value = fields.get(name, "-")
            if value.lstrip("-").isdigit():
                series.counters.setdefault(name, []).append(int(value))
    return out


def table(kernels: list[tuple[str, dict[tuple[str, str], Series]]]) -> str:
    """One row per (op, scan), one column group per kernel, and last/previous median ratio."""
    keys: list[tuple[str, str]] = []
    for _, results in kernels:
        keys += [k for k in results if k not in keys]
    if not keys:
        return "(no mmbench output)"
    head = f"  {'operation':<22}"
    for label, _ in kernels:
        head += f" | {label[:30]:^30}"
    if len(kernels) > 1:
        head += f" | {kernels[-1][0][:12]}/{kernels[-2][0][:12]}"
    sub = f"  {'':<22}" + " | {:>9} {:>6} {:>6} {:>6}".format(
        "median", "spread", "rmap", "ptes"
    ) * len(kernels)
    lines = [head, sub, "  " + "-" * (len(head) - 2)]
    for op, scan in keys:
        name = op if scan == "-" else f"{op} ({scan})"
        row = f"  {name:<22}"
        medians = []
        for _, results in kernels:
            s = results.get((op, scan)) or results.get((op, "-"))
            if s is None or not s.us:
                row += " | {:>9} {:>6} {:>6} {:>6}".format("-", "-", "-", "-")
                medians.append(None)
                continue
            rmap, ptes = s.counter("rmap_calls"), s.counter("ptes_read")
            adjust = s.counter("adjust_ptes_read")
            if ptes is not None and adjust:
                ptes += adjust
            row += " | {:>7.0f}us {:>5.0f}% {:>6} {:>6}".format(
                s.median(), 100 * s.spread(), "-" if rmap is None else rmap,
                "-" if ptes is None else ptes,
            )  # fmt: skip
            medians.append(s.median())
        if len(kernels) > 1:
            last, prev = medians[-1], medians[-2]
            row += f" | {last / prev:.3f}x" if last and prev else " | -"
        lines.append(row)
    lines.append(
        "  median and spread (max-min over median) of the timed repeats; rmap: rmap calls; "
        "ptes: page table slots the W scans and VMA recounts read (medians)"
    )
    return "\n".join(lines)
