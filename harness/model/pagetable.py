"""Page tables as extents: per 2 MiB block, either a PMD entry or a PTE table of runs.

A run is a stretch of consecutive present PTEs mapping consecutive pages of one folio
(or, for the zero page, the same page again and again). Runs never cross a table, so a
1 GiB PMD-mapped region is 512 entries and a PTE-mapped 2 MiB THP is one run. Every run
and PMD entry is linked into its folio's reverse map, which is what the counts read.

A Table present in Mm.tables means the PMD entry is not none: it holds either a huge
entry (`pmd`) or a page table, possibly empty (the kernel keeps empty tables until
free_pgtables()).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.model.folio import ZERO, Folio
from harness.model.layout import PAGE_SHIFT, overlapping

if TYPE_CHECKING:
    from harness.model.mm import Mm


class PteRun:
    __slots__ = ("folio", "npages", "pidx", "table", "va")

    def __init__(self, table: Table, va: int, npages: int, folio: Folio, pidx: int) -> None:
        self.table = table
        self.va = va
        self.npages = npages
        self.folio = folio
        self.pidx = pidx  # page index within the folio of the page at va (0 for zero)

    @property
    def end(self) -> int:
        return self.va + (self.npages << PAGE_SHIFT)

    def page_at(self, va: int) -> int:
        if self.folio.kind == ZERO:
            return 0
        return self.pidx + ((va - self.va) >> PAGE_SHIFT)

    def __repr__(self) -> str:
        return f"PteRun({self.va:#x}+{self.npages} -> #{self.folio.id}[{self.pidx}])"


@dataclass(frozen=True)
class Piece:
    """Part of a run: what a zap removed, or what a walk found."""

    va: int
    npages: int
    folio: Folio
    pidx: int

    @property
    def end(self) -> int:
        return self.va + (self.npages << PAGE_SHIFT)


class Table:
    __slots__ = ("idx", "mm", "pmd", "runs", "starts")

    def __init__(self, mm: Mm, idx: int) -> None:
        self.mm = mm
        self.idx = idx
        self.pmd: Folio | None = None
        self.runs: list[PteRun] = []
        self.starts: list[int] = []

    def __repr__(self) -> str:
        what = f"pmd #{self.pmd.id}" if self.pmd else f"{len(self.runs)} runs"
        return f"Table({self.mm.name} {self.idx << 21:#x}: {what})"


# --- reverse map -------------------------------------------------------------------------


def _link(run: PteRun) -> None:
    if run.folio.kind != ZERO:
        run.folio.pte_runs.add(run)
        run.folio.pte_pages += run.npages


def _unlink(run: PteRun) -> None:
    if run.folio.kind != ZERO:
        run.folio.pte_runs.discard(run)
        run.folio.pte_pages -= run.npages


def set_pmd(table: Table, folio: Folio) -> None:
    assert table.pmd is None and not table.runs, table
    table.pmd = folio
    if folio.kind != ZERO:
        folio.pmd_maps.add(table)


def clear_pmd(table: Table) -> Folio:
    folio = table.pmd
    assert folio is not None
    table.pmd = None
    folio.pmd_maps.discard(table)
    return folio


# --- PTE runs ----------------------------------------------------------------------------


def find_run(table: Table, va: int) -> PteRun | None:
    i = bisect_right(table.starts, va) - 1
    if i >= 0 and table.runs[i].end > va:
        return table.runs[i]
    return None


def next_run_start(table: Table, va: int) -> int | None:
    """The start of the first run beginning after va, if any."""
    i = bisect_right(table.starts, va)
    return table.starts[i] if i < len(table.starts) else None


def runs_between(table: Table, lo: int, hi: int) -> list[PteRun]:
    return overlapping(table.starts, table.runs, lo, hi)


def _contiguous(left: PteRun, va: int, folio: Folio, pidx: int) -> bool:
    """Whether mapping page pidx of folio at va continues the run `left`."""
    if left.end != va or left.folio is not folio:
        return False
    return folio.kind == ZERO or left.pidx + left.npages == pidx


def add_run(table: Table, va: int, npages: int, folio: Folio, pidx: int) -> None:
    """Map [va, va + npages pages) to pages pidx.. of folio; those PTEs must be none."""
    assert npages > 0 and table.pmd is None, (table, va)
    end = va + (npages << PAGE_SHIFT)
    assert (va >> 21) == table.idx and ((end - 1) >> 21) == table.idx, (table, va, npages)
    i = bisect_right(table.starts, va)
    left = table.runs[i - 1] if i > 0 else None
    right = table.runs[i] if i < len(table.runs) else None
    assert left is None or left.end <= va, (left, va)
    assert right is None or right.va >= end, (right, end)
    if folio.kind == ZERO:
        pidx = 0
    if left is not None and _contiguous(left, va, folio, pidx):
        _unlink(left)
        left.npages += npages
        _link(left)
        if right is not None and _contiguous(left, right.va, right.folio, right.pidx):
            _unlink(left)
            _unlink(right)
            left.npages += right.npages
            _link(left)
            del table.runs[i]
            del table.starts[i]
        return
    if (
        right is not None
        and right.va == end
        and right.folio is folio
        and (folio.kind == ZERO or pidx + npages == right.pidx)
    ):
        _unlink(right)
        right.va = va
        right.pidx = pidx
        right.npages += npages
        table.starts[i] = va
        _link(right)
        return
    run = PteRun(table, va, npages, folio, pidx)
    table.runs.insert(i, run)
    table.starts.insert(i, va)
    _link(run)


def remove_range(table: Table, lo: int, hi: int, keep_anon: bool = False) -> list[Piece]:
    """Clear the PTEs in [lo, hi); return what was mapped there.

    keep_anon: leave anonymous pages alone (unmap_mapping_range without even_cows, which
    must not zap the COWed pages of a private file mapping).
    """
    removed: list[Piece] = []
    for run in runs_between(table, lo, hi):
        if keep_anon and run.folio.kind == "anon":
            continue
        cut_lo, cut_hi = max(lo, run.va), min(hi, run.end)
        removed.append(
            Piece(cut_lo, (cut_hi - cut_lo) >> PAGE_SHIFT, run.folio, run.page_at(cut_lo))
        )
        _cut(table, run, cut_lo, cut_hi)
    return removed


def _cut(table: Table, run: PteRun, lo: int, hi: int) -> None:
    i = bisect_right(table.starts, run.va) - 1
    assert table.runs[i] is run
    _unlink(run)
    tail_npages = (run.end - hi) >> PAGE_SHIFT
    tail_pidx = run.page_at(hi)
    if lo > run.va:
        run.npages = (lo - run.va) >> PAGE_SHIFT
        _link(run)
        i += 1
    else:
        del table.runs[i]
        del table.starts[i]
    if tail_npages > 0:
        tail = PteRun(table, hi, tail_npages, run.folio, tail_pidx)
        table.runs.insert(i, tail)
        table.starts.insert(i, hi)
        _link(tail)


def pieces(table: Table, lo: int, hi: int) -> list[Piece]:
    """What [lo, hi) of a PTE table maps, clipped, in address order."""
    found: list[Piece] = []
    for run in runs_between(table, lo, hi):
        cut_lo, cut_hi = max(lo, run.va), min(hi, run.end)
        found.append(Piece(cut_lo, (cut_hi - cut_lo) >> PAGE_SHIFT, run.folio, run.page_at(cut_lo)))
    return found


def map_gaps(table: Table, lo: int, hi: int, folio: Folio, pidx_at_lo: int) -> int:
    """Map every none PTE of [lo, hi) to the matching page of folio; return pages mapped."""
    mapped = 0
    at = lo
    for run in runs_between(table, lo, hi):
        if run.va > at:
            n = (run.va - at) >> PAGE_SHIFT
            add_run(table, at, n, folio, pidx_at_lo + ((at - lo) >> PAGE_SHIFT))
            mapped += n
        at = max(at, run.end)
    if at < hi:
        n = (hi - at) >> PAGE_SHIFT
        add_run(table, at, n, folio, pidx_at_lo + ((at - lo) >> PAGE_SHIFT))
        mapped += n
    return mapped


def move_runs(src: Table, lo: int, hi: int, dst: Table, delta: int) -> None:
    """move_ptes: the PTEs of [lo, hi) go to dst at va + delta, with no rmap change."""
    for piece in remove_range(src, lo, hi):
        add_run(dst, piece.va + delta, piece.npages, piece.folio, piece.pidx)


def retarget(table: Table, idx: int, delta: int) -> None:
    """move_normal_pmd / move_huge_pmd: a whole table changes place in the address space."""
    table.idx = idx
    for run in table.runs:
        run.va += delta
    table.starts = [run.va for run in table.runs]
