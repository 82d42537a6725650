"""The mapcounts compared: P, T, E (6.1) and W, V (Wilcox's proposal and its revision).

P  page_mapcount() as /proc/kpagecount shows it: for anon and shmem alike it works out to
   PTE mappings of the page plus the folio's PMD mappings (anon via compound_mapcount,
   file because page_add_file_rmap(compound) bumps every subpage; the PG_double_map
   bias cancels out in __page_mapcount).
T  folio_mapcount(): PMD mappings + all PTE mappings.
E  folio_entire_mapcount(): PMD mappings.
W  distinct (VMA, page table) pairs with an entry mapping any page of the folio; a PMD
   entry is one pair.
V  distinct VMAs mapping any page of the folio.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from harness.model.folio import Folio


@dataclass(frozen=True)
class Counts:
    T: int
    E: int
    W: int
    V: int


def folio_counts(folio: Folio) -> Counts:
    tuples: set[tuple[int, int, int]] = set()
    vmas: set[tuple[int, int]] = set()
    for table in folio.pmd_maps:
        vma = table.mm.find_vma(table.idx << 21)
        key = id(vma)
        tuples.add((id(table.mm), key, table.idx))
        vmas.add((id(table.mm), key))
    for run in folio.pte_runs:
        mm = run.table.mm
        for vma in mm.vmas_in(run.va, run.end):
            tuples.add((id(mm), id(vma), run.table.idx))
            vmas.add((id(mm), id(vma)))
    return Counts(folio.total_mapcount, folio.entire_mapcount, len(tuples), len(vmas))


def p_runs(folio: Folio, ranges: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """P over the given page-index ranges [(first, count)], as (first, count, P) runs.

    Works on the boundaries of the folio's PTE runs, not page by page.
    """
    nr = folio.nr_pages
    delta: dict[int, int] = {0: 0, nr: 0}
    for run in folio.pte_runs:
        delta[run.pidx] = delta.get(run.pidx, 0) + 1
        end = run.pidx + run.npages
        delta[end] = delta.get(end, 0) - 1
    segments: list[tuple[int, int, int]] = []  # [start, end) with a constant P
    level = folio.entire_mapcount
    for a, b in itertools.pairwise(sorted(delta)):
        level += delta[a]
        segments.append((a, b, level))
    out: list[tuple[int, int, int]] = []
    for lo, hi in merge_ranges(ranges):
        for a, b, value in segments:
            s_lo, s_hi = max(a, lo), min(b, hi)
            if s_lo >= s_hi:
                continue
            if out and out[-1][0] + out[-1][1] == s_lo and out[-1][2] == value:
                out[-1] = (out[-1][0], out[-1][1] + s_hi - s_lo, value)
            else:
                out.append((s_lo, s_hi - s_lo, value))
    return out


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(first, count) ranges as sorted, disjoint [lo, hi) intervals."""
    merged: list[tuple[int, int]] = []
    for first, count in sorted(ranges):
        lo, hi = first, first + count
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def page_mapcount(folio: Folio, page: int) -> int:
    """P of one page."""
    count = folio.entire_mapcount
    for run in folio.pte_runs:
        if run.pidx <= page < run.pidx + run.npages:
            count += 1
    return count
