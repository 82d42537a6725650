"""Run a scenario through the model and report, per probe, what the guest should see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.model.counts import folio_counts, merge_ranges, p_runs
from harness.model.errors import ModelError
from harness.model.folio import ANON, SHMEM, ZERO, Folio
from harness.model.kernel import Kernel
from harness.model.layout import HPAGE_PMD_NR, PAGE_SHIFT, PMD_SHIFT
from harness.model.mm import Mm
from harness.model.pagetable import pieces
from harness.workload import (
    DropCaches,
    Exit,
    FileCreate,
    Fork,
    Madvise,
    Mmap,
    Mprotect,
    Mremap,
    Munmap,
    Open,
    Probe,
    Punch,
    Recall,
    Scenario,
    Spawn,
    Split,
    Step,
    Touch,
)

ZERO_PAGE_ID = 0  # the 4K zero page: every page of a run maps its page 0
HUGE_ZERO_PAGE_ID = -1  # the huge zero page, PMD-mapped


@dataclass(frozen=True)
class PageRun:
    """Consecutive present pages of a probed range mapping consecutive pages of one folio."""

    va: int
    npages: int
    folio: int  # model folio id
    page: int  # index in the folio of the page at va (always 0 for the 4K zero page)

    def to_json(self) -> dict[str, Any]:
        return {"va": self.va, "npages": self.npages, "folio": self.folio, "page": self.page}


@dataclass(frozen=True)
class FolioPrediction:
    """One folio met in a probed range, with its mapcounts as the model predicts them."""

    folio: int
    proc: str
    va: int  # first address of the probed range mapping this folio
    order: int
    kind: str  # anon | shmem | file | zero
    pages_in_range: int
    P_runs: tuple[tuple[int, int, int], ...]  # (first page index, count, P) over pages seen
    T: int
    E: int
    W: int
    V: int
    step_where: str

    def to_json(self) -> dict[str, Any]:
        return {
            "folio": self.folio,
            "proc": self.proc,
            "va": self.va,
            "order": self.order,
            "kind": self.kind,
            "pages_in_range": self.pages_in_range,
            "P_runs": [list(run) for run in self.P_runs],
            "T": self.T,
            "E": self.E,
            "W": self.W,
            "V": self.V,
            "step_where": self.step_where,
        }


@dataclass(frozen=True)
class VmaPrediction:
    """A VMA intersecting the probed range, with the smaps fields the guest reports."""

    start: int
    end: int
    rss_kb: int  # zero pages excluded, as smaps does (vm_normal_page / FOLL_DUMP)
    anon_huge_kb: int
    shmem_pmd_kb: int

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "rss_kb": self.rss_kb,
            "anon_huge_kb": self.anon_huge_kb,
            "shmem_pmd_kb": self.shmem_pmd_kb,
        }


@dataclass(frozen=True)
class ProbePrediction:
    label: str
    proc: str
    step: int
    where: str
    addr: int
    npages: int
    folios: tuple[FolioPrediction, ...]
    mapped: tuple[PageRun, ...]
    not_present: tuple[tuple[int, int], ...]  # (va, npages)
    vmas: tuple[VmaPrediction, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "proc": self.proc,
            "step": self.step,
            "where": self.where,
            "addr": self.addr,
            "npages": self.npages,
            "folios": [f.to_json() for f in self.folios],
            "mapped": [r.to_json() for r in self.mapped],
            "not_present": [list(r) for r in self.not_present],
            "vmas": [v.to_json() for v in self.vmas],
        }


@dataclass
class ModelResult:
    scenario: str
    source: str
    probes: dict[str, ProbePrediction] = field(default_factory=dict)  # by label, in order
    errors: dict[int, str] = field(default_factory=dict)  # step index -> predicted errno
    # vm events over the scenario (begin to end of /proc/vmstat), those the model predicts.
    events: dict[str, int] = field(default_factory=dict)
    recalls: dict[str, str] = field(default_factory=dict)  # recall label -> folio state

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "source": self.source,
            "errors": {str(k): v for k, v in self.errors.items()},
            "events": self.events,
            "recalls": self.recalls,
            "probes": [p.to_json() for p in self.probes.values()],
        }


def predict(scenario: Scenario) -> ModelResult:
    kernel = Kernel(scenario.setup)
    result = ModelResult(scenario.name, str(scenario.source))
    for step in scenario.steps:
        try:
            error = run_step(kernel, step)
            if isinstance(step, Probe):
                result.probes[step.label] = probe(kernel, step)
            elif isinstance(step, Recall):
                state = recall(kernel, result.probes[step.probe], step.addr)
                if state is None:
                    error = "ENOENT"  # the probe saw no page there to remember
                else:
                    result.recalls[step.label] = state
        except (ModelError, AssertionError) as exc:
            raise ModelError(
                f"{step.where}: scenario {scenario.name}, step {step.index} ({step.op}): "
                f"the model failed: {exc or type(exc).__name__}"
            ) from exc
        if error is not None:
            result.errors[step.index] = error
    result.events = dict(sorted(kernel.events.items()))
    return result


def run_step(kernel: Kernel, step: Step) -> str | None:
    """Apply one step; the errno name the guest should report, or None."""
    match step:
        case Spawn():
            return kernel.spawn(step.proc)
        case Fork():
            return kernel.fork(step.proc, step.child)
        case Exit():
            return kernel.exit(step.proc)
        case FileCreate():
            return kernel.create_file(step.file, step.kind, step.path, step.size, step.populate)
        case Mmap():
            return kernel.mmap(
                step.proc,
                step.addr,
                step.length,
                step.file,
                step.file_offset,
                step.shared,
                step.prot,
            )
        case Munmap():
            return kernel.munmap(step.proc, step.addr, step.addr + step.length)
        case Mremap():
            return kernel.mremap(step.proc, step.addr, step.length, step.new_addr)
        case Mprotect():
            return kernel.mprotect(step.proc, step.addr, step.addr + step.length, step.prot)
        case Madvise():
            return kernel.madvise(step.proc, step.addr, step.addr + step.length, step.advice)
        case Touch():
            return kernel.touch(step.proc, step.addr, step.addr + step.length, step.write)
        case Punch():
            return kernel.punch(step.file, step.offset, step.length)
        case Split():
            return kernel.split(step.proc, step.addr, step.addr + step.length)
        case DropCaches():
            return kernel.drop_caches()
        case Open():
            return kernel.open_again(step.file, step.of)
        case Probe() | Recall():
            return None
    raise ModelError(f"unknown step {step!r}")  # pragma: no cover


def probe(kernel: Kernel, step: Probe) -> ProbePrediction:
    mm = kernel.mms[step.proc]
    lo, hi = step.addr, step.addr + step.length
    mapped = _mapped_runs(mm, lo, hi)
    seen: dict[int, tuple[Folio, int, list[tuple[int, int]]]] = {}
    for run, folio in mapped:
        if folio.id not in seen:
            seen[folio.id] = (folio, run.va, [])
        seen[folio.id][2].append((run.page, run.npages))
    folios: list[FolioPrediction] = []
    for folio, first_va, ranges in seen.values():
        in_range = sum(count for _, count in ranges)
        if folio.kind == ZERO:
            spans = merge_ranges(ranges) if folio.order > 0 else [(0, 1)]
            runs = [(a, b - a, 0) for a, b in spans]
            counts = (0, 0, 0, 0)
        else:
            runs = p_runs(folio, ranges)
            c = folio_counts(folio)
            counts = (c.T, c.E, c.W, c.V)
        folios.append(
            FolioPrediction(
                folio.id,
                step.proc,
                first_va,
                folio.order,
                folio.kind,
                in_range,
                tuple(runs),
                *counts,
                str(step.where),
            )
        )
    runs_only = tuple(run for run, _ in mapped)
    return ProbePrediction(
        label=step.label,
        proc=step.proc,
        step=step.index,
        where=str(step.where),
        addr=lo,
        npages=step.length >> PAGE_SHIFT,
        folios=tuple(folios),
        mapped=runs_only,
        not_present=tuple(_holes(runs_only, lo, hi)),
        vmas=tuple(_vma_predictions(mm, lo, hi)),
    )


def recall(kernel: Kernel, seen: ProbePrediction, va: int) -> str | None:
    """What became of the folio `seen` showed at va, judged by its head page: freed,
    split (smaller now), mapped, cached (unmapped, in the page cache) or unmapped;
    "zero" for the zero page, which is never judged. None if no page was there."""
    run = next((r for r in seen.mapped if r.va <= va < r.va + (r.npages << PAGE_SHIFT)), None)
    if run is None:
        return None
    if run.folio in (ZERO_PAGE_ID, HUGE_ZERO_PAGE_ID):
        return "zero"
    order = next(f.order for f in seen.folios if f.folio == run.folio)
    folio = kernel.folios.get(run.folio)
    if folio is None:
        return "freed"
    if folio.order < order:
        return "split"
    if folio.mapped:
        return "mapped"
    return "cached" if folio.in_cache else "unmapped"


def _mapped_runs(mm: Mm, lo: int, hi: int) -> list[tuple[PageRun, Folio]]:
    found: list[tuple[PageRun, Folio]] = []
    first, last = lo >> PMD_SHIFT, (hi - 1) >> PMD_SHIFT
    for idx in sorted(i for i in mm.tables if first <= i <= last):
        table = mm.tables[idx]
        block_lo = max(lo, idx << PMD_SHIFT)
        block_hi = min(hi, (idx + 1) << PMD_SHIFT)
        if table.pmd is not None:
            page = (block_lo - (idx << PMD_SHIFT)) >> PAGE_SHIFT
            npages = (block_hi - block_lo) >> PAGE_SHIFT
            found.append((PageRun(block_lo, npages, table.pmd.id, page), table.pmd))
            continue
        for piece in pieces(table, block_lo, block_hi):
            run = PageRun(piece.va, piece.npages, piece.folio.id, piece.pidx)
            if found and _continues(found[-1][0], run, piece.folio):
                prev = found[-1][0]
                run = PageRun(prev.va, prev.npages + run.npages, prev.folio, prev.page)
                found[-1] = (run, piece.folio)
            else:
                found.append((run, piece.folio))
    return found


def _continues(prev: PageRun, run: PageRun, folio: Folio) -> bool:
    if prev.folio != run.folio or prev.va + (prev.npages << PAGE_SHIFT) != run.va:
        return False
    return (folio.kind == ZERO and folio.order == 0) or prev.page + prev.npages == run.page


def _holes(runs: tuple[PageRun, ...], lo: int, hi: int) -> list[tuple[int, int]]:
    holes: list[tuple[int, int]] = []
    at = lo
    for run in runs:
        if run.va > at:
            holes.append((at, (run.va - at) >> PAGE_SHIFT))
        at = run.va + (run.npages << PAGE_SHIFT)
    if at < hi:
        holes.append((at, (hi - at) >> PAGE_SHIFT))
    return holes


def _vma_predictions(mm: Mm, lo: int, hi: int) -> list[VmaPrediction]:
    out: list[VmaPrediction] = []
    for vma in mm.vmas_in(lo, hi):
        rss = anon_huge = shmem_pmd = 0
        first, last = vma.start >> PMD_SHIFT, (vma.end - 1) >> PMD_SHIFT
        for idx in [i for i in mm.tables if first <= i <= last]:
            table = mm.tables[idx]
            if table.pmd is not None:
                if table.pmd.kind == ZERO:
                    continue
                rss += HPAGE_PMD_NR
                if table.pmd.kind == ANON:
                    anon_huge += HPAGE_PMD_NR
                elif table.pmd.kind == SHMEM:
                    shmem_pmd += HPAGE_PMD_NR
                continue
            block_lo = max(vma.start, idx << PMD_SHIFT)
            block_hi = min(vma.end, (idx + 1) << PMD_SHIFT)
            rss += sum(p.npages for p in pieces(table, block_lo, block_hi) if p.folio.kind != ZERO)
        kb = 1 << (PAGE_SHIFT - 10)
        out.append(VmaPrediction(vma.start, vma.end, rss * kb, anon_huge * kb, shmem_pmd * kb))
    return out
