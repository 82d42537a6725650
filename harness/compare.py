"""Compare what the guest kernel showed with what the reference model predicts.

Folios are matched by position, (process, virtual address), never by PFN. A probe passes when
every page has the predicted presence, folio and order, and the observable counts agree.
Deviations with an environmental cause (a THP allocation fell back, khugepaged collapsed, a
deferred split ran) are their own verdict: they never pass silently and never count as a
model mismatch.

Observability on an unpatched 6.1 kernel: P per page (kpagecount); T only for a folio that
no process maps by PMD and whose pages the probe covers entirely (T = sum of P). With the
kernel series' kpagemc, T and E of every folio are read and checked, and W where the kernel
keeps it (CONFIG_FOLIO_PT_MAPCOUNT); the series' rmap audit gives W and V from the page
tables, and a folio whose kept W disagrees with its page tables fails the probe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness import workload
from harness.console import ConsoleReport
from harness.machine import BootResult
from harness.model import FolioPrediction, ModelResult, ProbePrediction, VmaPrediction
from harness.records import ELSEWHERE, KPF_ANON, Page, Probe, ScenarioRecords

PAGE = 4096

# vmstat counters whose growth during a scenario explains a deviation from the model: the
# model cannot predict an allocation failure or khugepaged (parked in the guest anyway).
ENV_COUNTERS = {
    "thp_fault_fallback": "an anonymous THP allocation fell back to small pages",
    "thp_fault_fallback_charge": "an anonymous THP allocation fell back (memcg charge)",
    "thp_file_fallback": "a shmem/file THP allocation fell back to small pages",
    "thp_collapse_alloc": "khugepaged collapsed pages into a THP",
}
# vm events the model predicts (ModelResult.events). A split beyond the prediction is
# environmental only under memory pressure (reclaim splits THPs it cannot swap); anything
# else that differs is a model or kernel difference the comparison reports.
PREDICTED_EVENTS = ("thp_split_page", "thp_deferred_split_page")
SPLIT_UNDER_PRESSURE = "thp_split_page"
# Counters that grow when the kernel reclaims under pressure (kswapd or direct reclaim).
PRESSURE_PREFIXES = ("pgscan_kswapd", "pgscan_direct", "allocstall_")


# Global counters that must come back to where they were once every worker of a scenario has
# exited (@VMSTAT exit), apart from what the interpreter itself maps: each page of a worker's
# mappings is taken off them exactly once, whatever path unmapped it.
BALANCED_COUNTERS = {
    "nr_anon_pages": "self_anon_kb",  # NR_ANON_MAPPED; interpreter: its Anonymous
    "nr_mapped": "self_file_kb",  # NR_FILE_MAPPED; interpreter: its Rss - Anonymous
}
# Pages a counter may be off by on a correct kernel. Measured on 6.1 (TCG guest, every
# scenario of configs/thp.yaml and an empty one): nr_anon_pages ends one page above what the
# interpreter's own Anonymous explains, whatever the scenario did; nr_mapped balances exactly.
BALANCE_SLACK = {"nr_anon_pages": 1, "nr_mapped": 0}


def accounting_problems(records: ScenarioRecords) -> list[str]:
    """Global mapped-page counters that did not balance over the scenario.

    Needs the folded @VMSTAT begin and exit snapshots of a newer mmwork; older records have
    no exit snapshot and are not checked.
    """
    begin, after = records.vmstat.get("begin", {}), records.vmstat.get("exit", {})
    if not after or "self_rss_kb" not in after or "self_rss_kb" not in begin:
        return []
    own = {
        "self_anon_kb": after["self_anon_kb"] - begin["self_anon_kb"],
        "self_file_kb": (after["self_rss_kb"] - after["self_anon_kb"])
        - (begin["self_rss_kb"] - begin["self_anon_kb"]),
    }
    problems = []
    for counter, self_key in BALANCED_COUNTERS.items():
        if counter not in begin or counter not in after:
            continue
        moved = after[counter] - begin[counter]
        expected = own[self_key] // (PAGE // 1024)
        if abs(moved - expected) > BALANCE_SLACK[counter]:
            problems.append(
                f"accounting: {counter} moved by {moved:+d} pages over the scenario with every "
                f"worker gone; expected {expected:+d} (the interpreter's own pages)"
            )
    return problems


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
    verdict: str  # pass | fail | environment | error | skipped
    reason: str | None
    probes: list[ProbeVerdict] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    diff: str = ""
    rmap: dict[str, dict[str, int]] = field(default_factory=dict)  # series' rmap_stats deltas
    recalls: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reason": self.reason,
            "environment": self.environment,
            "rmap": self.rmap,
            "recalls": self.recalls,
            "steps": self.steps,
            "probes": [p.to_json() for p in self.probes],
            "diff": self.diff,
        }


# --- observed side ---------------------------------------------------------------------------


def _pmd_mapped(probe: Probe, va: int) -> bool | None:
    """Whether smaps says the VMA at va has PMD mappings; None when the VMA is unknown."""
    for vma in probe.vmas:
        if vma.start <= va < vma.end:
            return vma.pmd_mapped_kb > 0
    return None


# --- comparison ------------------------------------------------------------------------------


def compare_probe(
    pred: ProbePrediction,
    observed: Probe | None,
    env_causes: list[str],
    identity: dict[int, int],
) -> ProbeVerdict:
    """Compare one probe; `identity` maps model folio ids to guest head PFNs scenario-wide,
    so a folio shared by fork must be the same guest folio in every probe that sees it."""
    verdict = ProbeVerdict(pred.label, pred.proc, "pass", pred.where)
    verdict.observed = observed
    if observed is None or not observed.complete:
        verdict.verdict = "error"
        verdict.problems.append("the guest sent no complete probe record")
        return verdict
    by_va: dict[int, Page] = {p.va: p for p in observed.pages}

    for va, npages in pred.not_present:
        present = [by_va[a] for a in range(va, va + npages * PAGE, PAGE) if _present(by_va, a)]
        if present:
            verdict.problems.append(
                f"{len(present)} page(s) present in the guest where the model predicts none, "
                f"first at 0x{present[0].va:x} (pfn {present[0].pfn})"
            )

    seen: dict[int, list[tuple[int, int, Page | None]]] = {}  # folio -> (index, va, page)
    for run in pred.mapped:
        for i in range(run.npages):
            va = run.va + i * PAGE
            index = run.page if run.page == 0 and _is_small_zero(pred, run.folio) else run.page + i
            seen.setdefault(run.folio, []).append((index, va, by_va.get(va)))
    for folio in pred.folios:
        fv = _compare_folio(folio, seen.get(folio.folio, []), identity, env_causes, observed.audits)
        fv.observed["pmd_mapped"] = _pmd_mapped(observed, folio.va)
        verdict.folios.append(fv)

    vma_problems = [problem for vma in pred.vmas for problem in _compare_vma(vma, observed)]
    outcomes = {f.verdict for f in verdict.folios}
    if vma_problems and _collapsed(env_causes) and "environment" in outcomes:
        # smaps follows the folios khugepaged made: PMD-mapped kB the model never mapped.
        vma_problems = [f"{problem} (khugepaged collapsed)" for problem in vma_problems]
        verdict.folios[0].problems += vma_problems
    else:
        verdict.problems += vma_problems
    if verdict.problems or "fail" in outcomes:
        verdict.verdict = "fail"
    elif "environment" in outcomes:
        verdict.verdict = "environment"
    return verdict


def _present(by_va: dict[int, Page], va: int) -> bool:
    page = by_va.get(va)
    return page is not None and page.present


def _is_small_zero(pred: ProbePrediction, folio_id: int) -> bool:
    folio = next((f for f in pred.folios if f.folio == folio_id), None)
    return folio is not None and folio.kind == "zero" and folio.order == 0


def _compare_vma(vma: VmaPrediction, probe: Probe) -> list[str]:
    guest = next((v for v in probe.vmas if v.start == vma.start and v.end == vma.end), None)
    if guest is None:
        shown = ", ".join(f"0x{v.start:x}-0x{v.end:x}" for v in probe.vmas) or "none"
        return [f"VMA 0x{vma.start:x}-0x{vma.end:x} expected; the guest has {shown}"]
    problems = []
    for name in ("rss_kb", "anon_huge_kb", "shmem_pmd_kb"):
        want, got = getattr(vma, name), getattr(guest, name)
        if want != got:
            problems.append(
                f"VMA 0x{vma.start:x}-0x{vma.end:x} {name}: expected {want}, observed {got}"
            )
    return problems


def _compare_folio(
    folio: FolioPrediction,
    pages: list[tuple[int, int, Page | None]],
    identity: dict[int, int],
    env_causes: list[str],
    audits: dict[int, tuple[int, int, str]],
) -> FolioVerdict:
    expected_p = {first + k: value for first, count, value in folio.P_runs for k in range(count)}
    present = [(index, va, page) for index, va, page in pages if page is not None and page.present]
    heads = sorted({page.head_pfn for _, _, page in present if page.head_pfn is not None})
    orders = {page.order for _, _, page in present}
    observed_order = orders.pop() if len(orders) == 1 else None
    observed_p = [(index, page.page_mapcount) for index, _, page in present]

    # T, E and W straight from the kernel series' kpagemc when the guest has it (W where
    # the kernel keeps it); otherwise T only where /proc shows it: whole folio in range and
    # no PMD mapping, T = sum of P.
    observed_t = observed_e = observed_w = None
    if folio.kind != "zero" and present:
        first = present[0][2]
        observed_t, observed_e = first.total_mapcount, first.entire_mapcount
        observed_w = first.pt_mapcount
    # The series' rmap audit is ground truth for W and V where it could walk the folio:
    # both the kernel's kept W and the audit's count of tuples must equal the model's W.
    observed_v = audit_w = None
    audit_status = None
    audit = audits.get(heads[0]) if len(heads) == 1 and folio.kind != "zero" else None
    if audit is not None and audit[2] != "skipped":
        audit_w, observed_v, audit_status = audit
    whole = folio.pages_in_range == 1 << folio.order and len(present) == folio.pages_in_range
    if observed_t is None and whole and folio.E == 0 and folio.kind != "zero":
        observed_t = sum(count or 0 for _, count in observed_p)
    expected = {
        "P": [list(r) for r in folio.P_runs], "T": folio.T, "E": folio.E, "W": folio.W,
        "V": folio.V, "order": folio.order, "kind": folio.kind,
    }  # fmt: skip
    observed = {
        "P": _index_runs(observed_p), "T": observed_t, "E": observed_e, "W": observed_w,
        "W_audit": audit_w, "V": observed_v, "audit": audit_status,
        "order": observed_order, "head_pfn": heads,
    }  # fmt: skip
    fv = FolioVerdict(folio.proc, folio.va, folio.order, expected, observed, "pass")

    missing = [va for _, va, page in pages if page is None or not page.present]
    if missing:
        fv.problems.append(f"{len(missing)} page(s) not present, first at 0x{missing[0]:x}")
    if len(heads) > 1:
        fv.problems.append(f"one model folio, {len(heads)} guest folios (head pfns {heads})")
    if observed_order is not None and observed_order != folio.order:
        fv.problems.append(f"order: expected {folio.order}, observed {observed_order}")
    if folio.kind != "zero":
        for index, va, page in present:
            if page.head_pfn is not None and page.pfn is not None:
                offset = page.pfn - page.head_pfn
                if offset != index and len(heads) == 1:
                    fv.problems.append(
                        f"0x{va:x} maps page {offset} of its guest folio; the model says {index}"
                    )
                    break
    if len(heads) == 1:
        known = identity.setdefault(folio.folio, heads[0])
        if known != heads[0]:
            fv.problems.append(
                f"model folio #{folio.folio} was guest folio pfn {known} in an earlier probe, "
                f"now pfn {heads[0]}"
            )
    bad = [(i, got) for i, got in observed_p if got != expected_p.get(i)]
    for first, count, got in _index_runs(bad):
        want = expected_p.get(first)
        fv.problems.append(
            f"P of pages {first}..{first + count - 1}: expected {want}, observed {got}"
        )
    for name, want, got in (("T", folio.T, observed_t), ("E", folio.E, observed_e),
                            ("W", folio.W, observed_w), ("W (rmap audit)", folio.W, audit_w),
                            ("V", folio.V, observed_v)):  # fmt: skip
        if got is not None and got != want:
            fv.problems.append(f"{name}: expected {want}, observed {got}")
    if audit_status == "mismatch":
        fv.problems.append(
            f"rmap audit: mismatch, the kernel's pt_mapcount {observed_w} but {audit_w} tuples "
            "in the page tables (folio dumped in console.log)"
        )

    if fv.problems:
        smaller = observed_order is not None and observed_order < folio.order
        # khugepaged is parked in the guest, but a fresh khugepaged thread (THP enabled
        # again after "never") or the first mm it is given scans once at once
        # (khugepaged_wait_work). What it collapsed the model cannot know: a bigger folio
        # (anon), or pages gone from the page tables (collapse_file retracts them).
        environmental = ((smaller or len(heads) > 1) and env_causes) or _collapsed(env_causes)
        fv.verdict = "environment" if environmental else "fail"
    return fv


def _collapsed(env_causes: list[str]) -> bool:
    return any(cause.startswith("thp_collapse_alloc") for cause in env_causes)


def _index_runs(pairs: list[tuple[int, int | None]]) -> list[list[Any]]:
    """[(index, value)] -> [[first index, count, value]] over consecutive equal values."""
    out: list[list[Any]] = []
    for index, value in pairs:
        if out and out[-1][2] == value and out[-1][0] + out[-1][1] == index:
            out[-1][1] += 1
        else:
            out.append([index, 1, value])
    return out


def environment_causes(
    records: ScenarioRecords, predicted: dict[str, int]
) -> tuple[list[str], list[str]]:
    """(causes, problems): vmstat counters that grew where the model cannot predict it,
    and predicted events the kernel did not count as many times as the model says."""
    begin, end = records.vmstat.get("begin", {}), records.vmstat.get("end", {})

    def grew(name: str) -> int:
        return end.get(name, 0) - begin.get(name, 0)

    causes = [f"{name} +{grew(name)}: {why}" for name, why in ENV_COUNTERS.items() if grew(name)]
    pressure = [
        f"{name} +{grew(name)}" for name in end if name.startswith(PRESSURE_PREFIXES) and grew(name)
    ]
    problems: list[str] = []
    for name in PREDICTED_EVENTS:
        if name not in end:
            continue
        got, want = grew(name), predicted.get(name, 0)
        if got == want:
            continue
        if got > want and name == SPLIT_UNDER_PRESSURE and pressure:
            causes.append(
                f"{name} +{got}, the model predicts +{want}: reclaim under memory pressure "
                f"({', '.join(pressure)}); raise machine.memory"
            )
        else:
            problems.append(f"{name}: the model predicts +{want}, the kernel counted +{got}")
    return causes, problems


def pt_mapcount_errors(records: ScenarioRecords) -> int:
    """How often the series' kernel found its own W wrong during the scenario: the growth of
    its folio_pt_mapcount/errors counter from the start to the processes' exit (0 when the
    kernel has no such counter)."""
    begin = records.vmstat.get("begin", {}).get("pt_mapcount_errors")
    if begin is None:
        return 0
    after = [records.vmstat.get(when, {}).get("pt_mapcount_errors") for when in ("end", "exit")]
    return max((n for n in after if n is not None), default=begin) - begin


def judge(
    scenario: workload.Scenario,
    records: ScenarioRecords | None,
    console: ConsoleReport,
    booted: BootResult,
    model: ModelResult,
) -> ScenarioVerdict:
    """The verdict of one scenario from everything the run observed."""
    splats = [s for s in console.splats if s.job == scenario.name]
    if records is None:
        reason = "the guest never started it"
        if booted.timed_out_in == scenario.name:
            reason = "the guest hung while running it (deadline passed)"
        elif booted.outcome == "timeout":
            reason = f"not run: the guest went silent in {booted.timed_out_in} (deadline passed)"
        elif console.fatal is not None:
            reason = f"not run: kernel {console.fatal.kind} earlier ({console.fatal.headline})"
        return ScenarioVerdict(scenario.name, "error", reason)

    missing = missing_knobs(scenario, records)
    if missing:
        return ScenarioVerdict(scenario.name, "skipped", "; ".join(missing))

    result = ScenarioVerdict(scenario.name, "pass", None, rmap=rmap_deltas(records))
    steps = {s.index: s for s in scenario.steps}
    exhausted = [
        f"the OOM killer ran (console.log line {line})"
        for job, line in console.oom_kills
        if job == scenario.name
    ]
    for step in records.steps:
        source = steps.get(step.index)
        where = str(source.where) if source else "?"
        want = model.errors.get(step.index)
        got = None if step.ok else step.errname
        if got == "ENOMEM" and want != got:
            exhausted.append(f"step {step.index} {step.op} at {where} returned ENOMEM")
        result.steps.append(
            {"index": step.index, "op": step.op, "where": where, "ok": step.ok,
             "errno": got, "expected_errno": want}
        )  # fmt: skip
        if got != want:
            result.verdict = "fail"
            result.diff += (
                f"step {step.index} {step.op} at {where}: "
                f"expected {want or 'success'}, got {got or 'success'}\n"
            )
    result.environment, event_problems = environment_causes(records, model.events)
    for problem in event_problems:
        result.verdict = "fail"
        result.diff += f"vmstat {problem}\n"

    identity: dict[int, int] = {}
    observed_probes = list(records.probes)
    for pred in model.probes.values():
        obs = next(
            (p for p in observed_probes if p.label == pred.label and p.process == pred.proc), None
        )
        if obs is not None:
            observed_probes.remove(obs)
        pv = compare_probe(pred, obs, result.environment, identity)
        result.probes.append(pv)
        if pv.verdict != "pass":
            result.diff += render_probe_diff(pv, scenario, pred.step)

    for label, want in model.recalls.items():
        check = judge_recall(label, want, records)
        result.recalls.append(check)
        if check["verdict"] == "fail":
            result.verdict = "fail"
            result.diff += check["diff"]
    accounting = accounting_problems(records)
    if accounting:
        result.verdict = "fail"
        result.diff += "".join(f"{line}\n" for line in accounting)
    wrong_w = pt_mapcount_errors(records)
    if wrong_w:
        result.verdict = "fail"
        result.diff += (
            f"the kernel found its (VMA, page table) count W wrong {wrong_w} time(s) "
            "(folio_pt_mapcount/errors; console.log has the first warning)\n"
        )

    verdicts = {p.verdict for p in result.probes}
    problems = []
    if splats:
        first = splats[0]
        problems.append(f"kernel {first.kind}: {first.headline} (console.log line {first.line})")
    if records.errors:
        problems.append("; ".join(records.errors))
    if not records.complete:
        problems.append("records end before the scenario finished")
    bad_setup = [
        f"{k}: {v}" for k, v in records.setup.items() if v != "ok" and not _absent_and_off(k, v)
    ]
    if bad_setup:
        problems.append("setup failed: " + ", ".join(bad_setup))
    if exhausted and not splats and (problems or result.verdict == "fail" or verdicts - {"pass"}):
        # What follows from running out of memory (EFAULT touching what was never
        # mapped, pages absent, a process killed) is not a model difference.
        result.verdict = "environment"
        result.environment.insert(0, "resource exhaustion: " + "; ".join(exhausted))
        result.reason = (
            f"resource exhaustion: {'; '.join(exhausted)}; the workload needs more memory "
            "than the guest has: raise machine.memory in the run config, or shrink it"
        )
    elif problems or "error" in verdicts:
        result.verdict = "error"
        result.reason = "; ".join(problems) or "a probe is missing"
    elif result.verdict == "fail" or "fail" in verdicts:
        result.verdict = "fail"
        nbad = sum(1 for p in result.probes if p.verdict == "fail")
        reasons = [f"{nbad} probe(s) differ from the model"] if nbad else []
        if wrong_w:
            reasons.append(f"the kernel found its W wrong {wrong_w} time(s)")
        reasons += accounting[:1]
        result.reason = "; ".join(reasons) or "a step differs"
    elif "environment" in verdicts:
        result.verdict = "environment"
        result.reason = "; ".join(result.environment)
    return result


def rmap_deltas(records: ScenarioRecords) -> dict[str, dict[str, int]]:
    """The series' rmap call counters (rmap_stats) over the scenario: {op: {calls, pages}}."""
    begin, end = records.vmstat.get("begin", {}), records.vmstat.get("end", {})
    out: dict[str, dict[str, int]] = {}
    for key, value in end.items():
        if not key.startswith("rmap."):
            continue
        _, op, what = key.split(".", 2)
        grew = value - begin.get(key, 0)
        out.setdefault(op, {"calls": 0, "pages": 0})[what] = grew
    return {op: v for op, v in sorted(out.items()) if v["calls"] or v["pages"]}


def sum_rmap(scenarios: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """rmap call counters summed over a run's scenarios (their `rmap` deltas)."""
    total: dict[str, dict[str, int]] = {}
    for sc in scenarios:
        for op, counts in sc.get("rmap", {}).items():
            into = total.setdefault(op, {"calls": 0, "pages": 0})
            into["calls"] += counts["calls"]
            into["pages"] += counts["pages"]
    return dict(sorted(total.items()))


def judge_recall(label: str, want: str, records: ScenarioRecords) -> dict[str, Any]:
    """A recall step: the state the model predicts against the one the guest's PFN facts
    show (records.Recall.state); the zero page is never judged."""
    seen = records.recalls.get(label)
    check: dict[str, Any] = {"label": label, "expected": want, "observed": None}
    if want == "zero":
        check["verdict"] = "pass"
        return check
    if seen is None:
        check.update(verdict="fail", diff=f"recall '{label}': no @RECALL record\n")
        return check
    earlier = next((p for p in records.probes if p.label == seen.probe), None)
    page = next((pg for pg in earlier.pages if pg.va == seen.va), None) if earlier else None
    was_anon = page is not None and bool((page.kpageflags or 0) & KPF_ANON)
    got = seen.state(was_anon)
    check.update(observed=got, facts=seen.to_json())
    if got == want or (got == ELSEWHERE and want in ("mapped", "freed")):
        check["verdict"] = "pass"
        return check
    check["verdict"] = "fail"
    check["diff"] = (
        f"recall '{label}' of probe '{seen.probe}' at 0x{seen.va:x}: expected {want}, "
        f"observed {got} (head pfn {seen.head_pfn}, order {seen.order} then, "
        f"{seen.now_order if seen.now_order is not None else 'a tail'} now, "
        f"{seen.mapped_pages} page(s) mapped, {seen.resident_pages} resident)\n"
    )
    return check


# Knobs that only some kernels have: absent means the mode does not exist, i.e. it is off.
OPTIONAL_KNOBS = {
    workload.FAULT_AROUND_WHOLE_FOLIO: "the kernel series' patch 0004 adds it",
}


def _absent_and_off(path: str, status: str) -> bool:
    return path in OPTIONAL_KNOBS and status == "ENOENT"


def missing_knobs(scenario: workload.Scenario, records: ScenarioRecords) -> list[str]:
    """Why a scenario cannot be judged on this kernel: it turns on a knob the kernel lacks."""
    wanted = dict(scenario.setup.knobs())
    return [
        f"skipped: this kernel has no {path} ({why}), which the scenario sets to {wanted[path]}"
        for path, why in OPTIONAL_KNOBS.items()
        if records.setup.get(path) == "ENOENT" and wanted.get(path) not in (None, "0")
    ]


def history(scenario: workload.Scenario, proc: str, lo: int, hi: int, before: int) -> list[str]:
    """The steps before `before` that could have shaped [lo, hi) in `proc`, for a diff."""
    lines = []
    for step in scenario.steps:
        if step.index >= before:
            break
        ranges: list[tuple[int, int]] = []
        addr, length = getattr(step, "addr", None), getattr(step, "length", None)
        if addr is not None and length is not None:
            ranges.append((addr, addr + length))
        new_addr = getattr(step, "new_addr", None)
        if new_addr is not None and length is not None:
            ranges.append((new_addr, new_addr + length))
        owners = {getattr(step, "proc", None), getattr(step, "child", None)}
        touches = any(a < hi and lo < b for a, b in ranges) or not ranges
        if step.op != "probe" and touches and (proc in owners or owners == {None}):
            lines.append(f"step {step.index} {step.op} at {step.where}")
    return lines[-8:]


def render_probe_diff(pv: ProbeVerdict, scenario: workload.Scenario | None = None,
                      step: int = 0) -> str:  # fmt: skip
    """Human-readable explanation of a probe that did not pass."""
    lines = [f"probe '{pv.label}' of {pv.process} at {pv.where}: {pv.verdict.upper()}"]
    lines += [f"  {problem}" for problem in pv.problems]
    bad = [fv for fv in pv.folios if fv.verdict != "pass"]
    i = 0
    while i < len(bad):
        # A run of folios none of whose pages the guest shows (a mapping that failed, a
        # range never faulted) is one line, not one block per 4K folio.
        j = i
        while (
            j < len(bad)
            and _wholly_absent(bad[j])
            and (j == i or bad[j].va == _folio_end(bad[j - 1]))
        ):
            j += 1
        if j - i > 1:
            first, last = bad[i], bad[j - 1]
            pages = sum((fv.expected["P"] and sum(r[1] for r in fv.expected["P"])) or 0
                        for fv in bad[i:j])  # fmt: skip
            lines.append(
                f"  {j - i} folios at 0x{first.va:x}-0x{_folio_end(last):x} ({pages} pages): "
                f"none present in the guest: {first.verdict}"
            )
            if scenario is not None:
                steps = history(scenario, first.process, first.va, _folio_end(last), step)
                lines += ["    state produced by:"] + [f"      {h}" for h in steps]
            i = j
            continue
        fv = bad[i]
        i += 1
        lines.append(
            f"  folio at 0x{fv.va:x}: order {fv.order} expected, {fv.observed['order']} "
            f"observed (guest head pfn {fv.observed['head_pfn']}): {fv.verdict}"
        )
        lines += [f"    {problem}" for problem in fv.problems]
        if scenario is not None:
            # The whole folio's extent, where it is mapped linearly around fv.va.
            first_index = fv.expected["P"][0][0] if fv.expected["P"] else 0
            lo = fv.va - first_index * PAGE
            steps = history(scenario, fv.process, lo, lo + (PAGE << fv.order), step)
            lines += ["    state produced by:"] + [f"      {h}" for h in steps]
    return "\n".join(lines) + "\n"


def _wholly_absent(fv: FolioVerdict) -> bool:
    return not fv.observed["head_pfn"] and all("not present" in p for p in fv.problems)


def _folio_end(fv: FolioVerdict) -> int:
    """The end of the probed pages of a folio: its va plus the pages the model expects."""
    return fv.va + PAGE * sum(run[1] for run in fv.expected["P"])
