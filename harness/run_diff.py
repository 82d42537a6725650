"""`harness diff RUN_A RUN_B`: what changed between two runs — verdicts, and per folio the
kernel's values (P, T, E, W, the audit's W and V, order) and the model's.

Exit status 0 when nothing changed, 1 when something did, 2 on an error (as `harness run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.formats import cases
from harness.formats.cases import Case, RunReport

FOLIO_KEYS = ("P", "T", "E", "W", "W_audit", "V", "order", "pmd_mapped")


def _by_name(items: list[Case]) -> dict[str, Case]:
    return {c.name: c for c in items}


def _folios(report: RunReport) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(scenario, probe, folio) -> the folio's comparison, for every probed folio."""
    out = {}
    for s in report.scenarios:
        for p in s.get("probes") or []:
            for f in p.get("folios") or []:
                out[(s["name"], cases.probe_name(p), cases.folio_name(f))] = f
    return out


def _value_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    lines = []
    for side in ("observed", "expected"):
        who = "kernel" if side == "observed" else "model"
        for key in FOLIO_KEYS:
            va, vb = (a.get(side) or {}).get(key), (b.get(side) or {}).get(key)
            if va != vb and not (side == "expected" and key in ("W_audit", "pmd_mapped")):
                lines.append(f"      {who} {key}: {_short(va)} -> {_short(vb)}")
    return lines


def _short(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def diff(a: RunReport, b: RunReport) -> list[str]:
    """Human-readable differences, empty when the runs agree."""
    lines: list[str] = []
    if a.verdict != b.verdict:
        lines.append(f"verdict: {a.verdict} -> {b.verdict}")
    for ka, kb in zip(a.kernels, b.kernels, strict=False):
        for field in ("version", "series_identity", "build_key", "config_sha256"):
            va, vb = getattr(ka, field), getattr(kb, field)
            if va != vb:
                who = "kernel" if ka.label == "kernel" else f"kernel {ka.label}"
                lines.append(f"{who} {field}: {va or '-'} -> {vb or '-'}")
    ca, cb = _by_name(a.cases), _by_name(b.cases)
    for name in [n for n in ca if n not in cb]:
        lines.append(f"- {name}: only in {a.run_id} ({ca[name].status})")
    for name in [n for n in cb if n not in ca]:
        lines.append(f"+ {name}: only in {b.run_id} ({cb[name].status})")
    for name in [n for n in ca if n in cb]:
        x, y = ca[name], cb[name]
        if x.status != y.status:
            why = f": {y.message}" if y.message else ""
            lines.append(f"  {name}: {x.status} -> {y.status}{why}")
        sub_a = {"/".join(p[1:]): c for p, c in x.walk() if len(p) > 1}
        sub_b = {"/".join(p[1:]): c for p, c in y.walk() if len(p) > 1}
        for path in [p for p in sub_a if p in sub_b]:
            if sub_a[path].status != sub_b[path].status:
                lines.append(f"    {path}: {sub_a[path].status} -> {sub_b[path].status}")
    fa, fb = _folios(a), _folios(b)
    for key in [k for k in fa if k in fb]:
        changes = _value_changes(fa[key], fb[key])
        if changes:
            lines.append(f"  {key[0]} / {key[1]} / {key[2]}:")
            lines += changes
    for key in [k for k in fa if k not in fb]:
        lines.append(f"  {key[0]} / {key[1]} / {key[2]}: only in {a.run_id}")
    for key in [k for k in fb if k not in fa]:
        lines.append(f"  {key[0]} / {key[1]} / {key[2]}: only in {b.run_id}")
    return lines


def main(run_a: Path, run_b: Path) -> int:
    a, b = cases.load(run_a), cases.load(run_b)
    lines = diff(a, b)
    print(f"--- {run_a}\n+++ {run_b}")
    print("\n".join(lines) if lines else "no differences")
    return 1 if lines else 0
