"""Compare what the guest kernel showed with what the reference model predicts.

Folios are matched by position, (process, virtual address), never by PFN. A probe passes when
every page has the predicted presence, folio and order, and the observable counts agree.
Deviations with an environmental cause (a THP allocation fell back, khugepaged collapsed, a
deferred split ran) are their own verdict: they never pass silently and never count as a
model mismatch.

Observability on an unpatched 6.1 kernel: P per page (kpagecount); T only for a folio that
no process maps by PMD and whose pages the probe covers entirely (T = sum of P); E, W and V
only with the probe interface of the kernel series, so they are reported as predictions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import workload
from harness.console import ConsoleReport
from harness.machine import BootResult
from harness.records import Page, Probe, ScenarioRecords

PAGE = 4096

# vmstat counters whose growth during a scenario explains a deviation from the model.
ENV_COUNTERS = {
    "thp_fault_fallback": "an anonymous THP allocation fell back to small pages",
    "thp_fault_fallback_charge": "an anonymous THP allocation fell back (memcg charge)",
    "thp_file_fallback": "a shmem/file THP allocation fell back to small pages",
    "thp_collapse_alloc": "khugepaged collapsed pages into a THP",
    "thp_split_page": "a THP was split (deferred split shrinker or reclaim)",
}


@dataclass(frozen=True)
class ExpectedFolio:
    """The model's view of one folio in a probed range."""

    process: str
    va: int  # first virtual address of the folio inside the probed range
    order: int
    npages: int  # pages of the folio inside the probed range, from va on
    p_runs: tuple[tuple[int, int, int], ...]  # (first page index in range, count, P)
    T: int
    E: int
    W: int
    V: int
    pmd_mapped_here: bool  # mapped by a PMD in this process at this address
    folio_pages: int  # 1 << order; whole folio in range when npages == folio_pages


@dataclass(frozen=True)
class ExpectedProbe:
    label: str
    process: str
    step: int
    where: str  # file:line of the probe step
    addr: int
    npages: int
    folios: tuple[ExpectedFolio, ...]
    history: tuple[str, ...] = ()  # steps that shaped this state, for the diff


@dataclass
class FolioVerdict:
    process: str
    va: int
    order: int
    expected: dict[str, Any]
    observed: dict[str, Any]
    verdict: str  # pass | fail | environment
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "va": f"0x{self.va:x}",
            "order": self.order,
            "expected": self.expected,
            "observed": self.observed,
            "verdict": self.verdict,
            "problems": self.problems,
        }


@dataclass
class ProbeVerdict:
    label: str
    process: str
    verdict: str
    where: str
    folios: list[FolioVerdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    observed: Probe | None = None

    def to_json(self) -> dict[str, Any]:
        probe = self.observed
        return {
            "label": self.label,
            "process": self.process,
            "where": self.where,
            "verdict": self.verdict,
            "problems": self.problems,
            "pid": probe.pid if probe else None,
            "vmas": [v.to_json() for v in probe.vmas] if probe else [],
            "folios": [f.to_json() for f in self.folios],
            "pages": [p.to_json() for p in probe.pages] if probe else [],
        }


@dataclass
class ScenarioVerdict:
    name: str
    verdict: str  # pass | fail | environment | error
    reason: str | None
    probes: list[ProbeVerdict] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    diff: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reason": self.reason,
            "environment": self.environment,
            "steps": self.steps,
            "probes": [p.to_json() for p in self.probes],
            "diff": self.diff,
        }


# --- observed side ---------------------------------------------------------------------------


def runs(values: Sequence[int | None]) -> list[list[Any]]:
    """[[first index, count, value], ...] for consecutive equal values."""
    out: list[list[Any]] = []
    for i, v in enumerate(values):
        if out and out[-1][2] == v and out[-1][0] + out[-1][1] == i:
            out[-1][1] += 1
        else:
            out.append([i, 1, v])
    return out


def expand(p_runs: Iterable[Sequence[int]]) -> list[int]:
    values: list[int] = []
    for _first, count, value in p_runs:
        values.extend([value] * count)
    return values


def _pmd_mapped(probe: Probe, va: int) -> bool | None:
    """Whether smaps says the VMA at va has PMD mappings; None when the VMA is unknown."""
    for vma in probe.vmas:
        if vma.start <= va < vma.end:
            return vma.pmd_mapped_kb > 0
    return None


# --- comparison ------------------------------------------------------------------------------


def compare_probe(
    expected: ExpectedProbe, observed: Probe | None, env_causes: list[str]
) -> ProbeVerdict:
    verdict = ProbeVerdict(expected.label, expected.process, "pass", expected.where)
    verdict.observed = observed
    if observed is None or not observed.complete:
        verdict.verdict = "error"
        verdict.problems.append("the guest sent no complete probe record")
        return verdict
    by_va: dict[int, Page] = {p.va: p for p in observed.pages}
    covered: set[int] = set()

    for folio in expected.folios:
        fv = _compare_folio(folio, by_va, observed, env_causes)
        covered.update(folio.va + i * PAGE for i in range(folio.npages))
        verdict.folios.append(fv)

    # Pages the guest has mapped where the model predicts nothing.
    extra = [p for p in observed.pages if p.present and p.va not in covered]
    if extra:
        verdict.problems.append(
            f"{len(extra)} page(s) present in the guest where the model predicts none, "
            f"first at 0x{extra[0].va:x} (pfn {extra[0].pfn})"
        )
    outcomes = {f.verdict for f in verdict.folios}
    if verdict.problems or "fail" in outcomes:
        verdict.verdict = "fail"
    elif "environment" in outcomes:
        verdict.verdict = "environment"
    return verdict


def _compare_folio(
    folio: ExpectedFolio, by_va: dict[int, Page], probe: Probe, env_causes: list[str]
) -> FolioVerdict:
    pages = [by_va.get(folio.va + i * PAGE) for i in range(folio.npages)]
    expected_p = expand(folio.p_runs)
    observed_p = [p.page_mapcount if p is not None else None for p in pages]
    heads = {p.head_pfn for p in pages if p is not None and p.present}
    orders = {p.order for p in pages if p is not None and p.present}
    observed_order = orders.pop() if len(orders) == 1 else None

    expected = {
        "P": [list(r) for r in folio.p_runs],
        "T": folio.T,
        "E": folio.E,
        "W": folio.W,
        "V": folio.V,
        "order": folio.order,
    }
    observed_t = None
    whole = folio.npages == folio.folio_pages
    if whole and not folio.pmd_mapped_here and folio.E == 0 and None not in observed_p:
        observed_t = sum(v for v in observed_p if v is not None)
    observed = {
        "P": runs(observed_p),
        "T": observed_t,
        "E": None,
        "W": None,
        "V": None,
        "order": observed_order,
        "head_pfn": sorted(h for h in heads if h is not None),
        "pmd_mapped": _pmd_mapped(probe, folio.va),
    }
    fv = FolioVerdict(folio.process, folio.va, folio.order, expected, observed, "pass")

    missing = [i for i, p in enumerate(pages) if p is None or not p.present]
    if missing:
        fv.problems.append(
            f"{len(missing)} page(s) not present in the guest, first at "
            f"0x{folio.va + missing[0] * PAGE:x}"
        )
    if len(heads) > 1:
        fv.problems.append(f"pages the model puts in one folio belong to {len(heads)} guest folios")
    if observed_order is not None and observed_order != folio.order:
        fv.problems.append(f"order: expected {folio.order}, observed {observed_order}")
    for first, count, value in _p_mismatches(expected_p, observed_p):
        fv.problems.append(
            f"P pages {first}-{first + count - 1} (0x{folio.va + first * PAGE:x}): "
            f"expected {expected_p[first]}, observed {value}"
        )
    if observed_t is not None and observed_t != folio.T:
        fv.problems.append(f"T: expected {folio.T}, observed {observed_t}")
    pmd = observed["pmd_mapped"]
    if pmd is not None and folio.pmd_mapped_here and not pmd:
        fv.problems.append("expected a PMD mapping here; smaps shows none in this VMA")

    if fv.problems:
        smaller = observed_order is not None and observed_order < folio.order
        fv.verdict = "environment" if (smaller or len(heads) > 1) and env_causes else "fail"
    return fv


def _p_mismatches(expected: list[int], observed: list[int | None]) -> list[tuple[int, int, Any]]:
    bad = [
        (i, observed[i]) for i in range(len(expected)) if observed[i] is not None
        and observed[i] != expected[i]
    ]  # fmt: skip
    merged: list[tuple[int, int, Any]] = []
    for i, v in bad:
        if merged and merged[-1][0] + merged[-1][1] == i and merged[-1][2] == v:
            merged[-1] = (merged[-1][0], merged[-1][1] + 1, v)
        else:
            merged.append((i, 1, v))
    return merged


def environment_causes(records: ScenarioRecords, scenario: workload.Scenario) -> list[str]:
    """vmstat counters that grew during the scenario and explain a deviation."""
    begin, end = records.vmstat.get("begin", {}), records.vmstat.get("end", {})
    forced_split = any(isinstance(s, workload.Split) for s in scenario.steps)
    causes = []
    for name, meaning in ENV_COUNTERS.items():
        if name == "thp_split_page" and forced_split:
            continue
        grew = end.get(name, 0) - begin.get(name, 0)
        if grew > 0:
            causes.append(f"{name} +{grew}: {meaning}")
    return causes


def judge(
    scenario: workload.Scenario,
    records: ScenarioRecords | None,
    console: ConsoleReport,
    booted: BootResult,
    expected: Sequence[ExpectedProbe],
    expected_errors: dict[int, str] | None = None,
) -> ScenarioVerdict:
    """The verdict of one scenario from everything the run observed."""
    expected_errors = expected_errors or {}
    splats = [s for s in console.splats if s.job == scenario.name]
    if records is None:
        reason = "the guest never started it"
        if booted.timed_out_in == scenario.name:
            reason = "the guest hung while running it (deadline passed)"
        elif console.fatal is not None:
            reason = f"not run: kernel {console.fatal.kind} earlier ({console.fatal.headline})"
        return ScenarioVerdict(scenario.name, "error", reason)

    result = ScenarioVerdict(scenario.name, "pass", None)
    steps = {s.index: s for s in scenario.steps}
    for step in records.steps:
        source = steps.get(step.index)
        where = str(source.where) if source else "?"
        want = expected_errors.get(step.index)
        got = None if step.ok else step.errname
        entry = {"index": step.index, "op": step.op, "where": where, "ok": step.ok,
                 "errno": step.errname, "expected_errno": want}  # fmt: skip
        result.steps.append(entry)
        if got != want:
            result.verdict = "fail"
            result.diff += (
                f"step {step.index} {step.op} at {where}: "
                f"expected {want or 'success'}, got {got or 'success'}\n"
            )
    result.environment = environment_causes(records, scenario)

    observed_probes = list(records.probes)
    for exp in expected:
        obs = next(
            (p for p in observed_probes if p.label == exp.label and p.process == exp.process),
            None,
        )
        if obs is not None:
            observed_probes.remove(obs)
        pv = compare_probe(exp, obs, result.environment)
        result.probes.append(pv)
        if pv.verdict != "pass":
            result.diff += render_probe_diff(pv, exp)

    verdicts = {p.verdict for p in result.probes}
    problems = []
    if splats:
        first = splats[0]
        problems.append(f"kernel {first.kind}: {first.headline} (console.log line {first.line})")
    if records.errors:
        problems.append("; ".join(records.errors))
    if not records.complete:
        problems.append("records end before the scenario finished")
    if any(v != "ok" for v in records.setup.values()):
        bad = [f"{k}: {v}" for k, v in records.setup.items() if v != "ok"]
        problems.append("setup failed: " + ", ".join(bad))
    if problems or "error" in verdicts:
        result.verdict = "error"
        result.reason = "; ".join(problems) or "a probe is missing"
    elif result.verdict == "fail" or "fail" in verdicts:
        result.verdict = "fail"
        nbad = sum(1 for p in result.probes if p.verdict == "fail")
        result.reason = f"{nbad} probe(s) differ from the model" if nbad else "step outcome differs"
    elif "environment" in verdicts:
        result.verdict = "environment"
        result.reason = "; ".join(result.environment)
    return result


def render_probe_diff(pv: ProbeVerdict, exp: ExpectedProbe) -> str:
    """Human-readable explanation of a probe that did not pass."""
    lines = [f"probe '{pv.label}' of {pv.process} at {pv.where}: {pv.verdict.upper()}"]
    lines += [f"  {problem}" for problem in pv.problems]
    for fv in pv.folios:
        if fv.verdict == "pass":
            continue
        lines.append(
            f"  folio at 0x{fv.va:x} (order {fv.order} expected, "
            f"{fv.observed['order']} observed, head pfn {fv.observed['head_pfn']}): {fv.verdict}"
        )
        lines += [f"    {problem}" for problem in fv.problems]
    if exp.history:
        lines.append("  state produced by:")
        lines += [f"    {h}" for h in exp.history]
    return "\n".join(lines) + "\n"
