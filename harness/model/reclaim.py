"""MADV_COLD and MADV_PAGEOUT (madvise_cold_or_pageout_pte_range) in a guest without swap.

Both split a large folio that the range covers only in part, or that is PTE-mapped, as
long as this is its only mapping (page_mapcount() == 1); a shared one ends the walk of
that page table. MADV_PAGEOUT then hands the folios to reclaim: without swap an anon
folio cannot be written out, but shrink_folio_list splits a large one on the way
(add_to_swap fails, split_folio_to_list); shmem folios are split, unmapped
(try_to_unmap) and, if clean, dropped from the page cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.model.counts import page_mapcount
from harness.model.folio import ANON, ZERO, Folio
from harness.model.layout import PAGE_SIZE, PMD_SHIFT, PMD_SIZE, pmd_end
from harness.model.pagetable import find_run, next_run_start
from harness.model.thp import split_folio

if TYPE_CHECKING:
    from harness.model.mm import Mm
    from harness.model.state import KernelState


def cold_or_pageout(kernel: KernelState, mm: Mm, lo: int, hi: int, pageout: bool) -> None:
    va = lo
    while va < hi:
        nxt = min(hi, pmd_end(va))
        _pmd_range(kernel, mm, va, nxt, pageout)
        va = nxt


def _pmd_range(kernel: KernelState, mm: Mm, lo: int, hi: int, pageout: bool) -> None:
    idx = lo >> PMD_SHIFT
    table = mm.tables.get(idx)
    if table is None:
        return
    if table.pmd is not None:
        folio = table.pmd
        if folio.kind == ZERO or page_mapcount(folio, 0) != 1:
            return  # "Do not interfere with other mappings of this page"
        if hi - lo == PMD_SIZE:
            if pageout:
                _reclaim(kernel, [folio])
            return
        split_folio(kernel, folio)
        table = mm.tables.get(idx)
        if table is None:
            return
    victims: list[Folio] = []
    va = lo
    while va < hi:
        run = find_run(table, va)
        if run is None:
            nxt = next_run_start(table, va)
            if nxt is None or nxt >= hi:
                break
            va = nxt
            continue
        folio = run.folio
        if folio.kind == ZERO:
            va = min(hi, run.end)
            continue
        if folio.order > 0:
            if page_mapcount(folio, run.page_at(va)) != 1:
                break
            split_folio(kernel, folio)
            table = mm.tables.get(idx)
            if table is None:
                break
            continue
        if pageout and page_mapcount(folio, 0) == 1:
            victims.append(folio)
        va += PAGE_SIZE
    _reclaim(kernel, victims)


def _reclaim(kernel: KernelState, folios: list[Folio]) -> None:
    """reclaim_pages → shrink_folio_list, with no swap device to write anon pages to."""
    for folio in folios:
        if folio.kind == ANON:
            split_folio(kernel, folio)  # a no-op for order 0, which just stays
            continue
        file = folio.file
        assert file is not None
        first, count = folio.index, folio.nr_pages
        if folio.order > 0:
            split_folio(kernel, folio)
        for index in range(first, min(first + count, file.size_pages)):
            page = file.lookup(index)
            if page is None:
                continue
            kernel.unmap_folio_everywhere(page)
            if not page.dirty:  # shmem_writepage cannot write a dirty page without swap
                file.remove(page)
                kernel.release(page)
