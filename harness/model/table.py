"""Predictions as text (for `harness model --workload FILE`) and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from harness.model.predict import FolioPrediction, ModelResult, ProbePrediction


def format_table(result: ModelResult | Sequence[ModelResult]) -> str:
    results = [result] if isinstance(result, ModelResult) else list(result)
    return "\n".join(_scenario(r) for r in results)


def to_json(result: ModelResult | Sequence[ModelResult]) -> str:
    if isinstance(result, ModelResult):
        return json.dumps(result.to_json(), indent=2)
    return json.dumps([r.to_json() for r in result], indent=2)


def _scenario(result: ModelResult) -> str:
    lines = [f"scenario {result.scenario}  ({result.source})"]
    for index, errno in sorted(result.errors.items()):
        lines.append(f"  step {index}: predicted to fail with {errno}")
    for probe in result.probes.values():
        lines.extend(_probe(probe))
    if not result.probes:
        lines.append("  (no probes)")
    return "\n".join(lines) + "\n"


def _probe(probe: ProbePrediction) -> list[str]:
    lines = [
        f"  probe {probe.label}: {probe.proc} {probe.addr:#x} +{probe.npages} pages "
        f"(step {probe.step}, {probe.where})"
    ]
    header = ("folio", "va", "order", "kind", "pages", "T", "E", "W", "V", "P (page:count=value)")
    rows = [header] + [_row(f) for f in probe.folios]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [cell.rjust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("    " + "  ".join([*cells, row[-1]]))
    if not probe.folios:
        lines.append("    (nothing mapped)")
    for va, npages in probe.not_present:
        lines.append(f"    not present: {va:#x} +{npages} pages")
    for vma in probe.vmas:
        lines.append(
            f"    vma {vma.start:#x}-{vma.end:#x} rss {vma.rss_kb}K anon_huge "
            f"{vma.anon_huge_kb}K shmem_pmd {vma.shmem_pmd_kb}K"
        )
    return lines


def _row(folio: FolioPrediction) -> tuple[str, ...]:
    p_text = " ".join(
        f"{first}:{count}={value}" if count > 1 else f"{first}={value}"
        for first, count, value in folio.P_runs
    )
    return (
        f"#{folio.folio}",
        f"{folio.va:#x}",
        str(folio.order),
        folio.kind,
        str(folio.pages_in_range),
        str(folio.T),
        str(folio.E),
        str(folio.W),
        str(folio.V),
        p_text,
    )
