"""Transparent huge pages: when 6.1 allocates them, and how PMDs and folios split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.model.folio import ANON, ZERO, Folio
from harness.model.layout import HPAGE_PMD_NR, PAGE_SHIFT, PMD_SHIFT, PMD_SIZE, pmd_start
from harness.model.pagetable import Table, add_run, clear_pmd, pieces, remove_range
from harness.model.vma import Vma

if TYPE_CHECKING:
    from harness.model.mm import Mm
    from harness.model.state import KernelState


# --- policy ------------------------------------------------------------------------------


def anon_thp_fault_allowed(kernel: KernelState, vma: Vma, va: int) -> bool:
    """Whether an anonymous fault at va tries a PMD-sized folio first.

    __handle_mm_fault: hugepage_vma_check(in_pf) reads the sysfs `enabled` knob and
    VM_HUGEPAGE / VM_NOHUGEPAGE; do_huge_pmd_anonymous_page then needs the aligned 2 MiB
    around va inside the VMA (transhuge_vma_suitable). Allocation is assumed to succeed.
    """
    if not vma.anonymous or vma.thp == "nohugepage":
        return False
    enabled = kernel.setup.thp_enabled
    if enabled == "never" or (enabled == "madvise" and vma.thp != "hugepage"):
        return False
    return transhuge_vma_suitable(vma, va)


def transhuge_vma_suitable(vma: Vma, va: int) -> bool:
    """include/linux/huge_mm.h: a file VMA must map offsets congruent to addresses mod 2 MiB."""
    if not vma.anonymous and ((vma.start >> PAGE_SHIFT) - vma.pgoff) % HPAGE_PMD_NR:
        return False
    haddr = pmd_start(va)
    return haddr >= vma.start and haddr + PMD_SIZE <= vma.end


# --- splitting a PMD mapping -------------------------------------------------------------


def split_pmd(kernel: KernelState, table: Table) -> None:
    """__split_huge_pmd_locked on one PMD entry.

    Anon: the PMD becomes a PTE table mapping the same 512 pages; AnonExclusive of the
    head is copied to every subpage. Huge zero page: 512 PTEs of the 4K zero page
    (__split_huge_zero_page_pmd). File/shmem: the PMD is simply zapped ("We are going to
    unmap this huge page. So just go ahead and zap it") and pages refault later as PTEs.
    """
    folio = table.pmd
    assert folio is not None
    haddr = table.idx << PMD_SHIFT
    clear_pmd(table)
    if folio.kind == ZERO:
        add_run(table, haddr, HPAGE_PMD_NR, kernel.zero_page, 0)
    elif folio.kind == ANON:
        if folio.exclusive & 1:
            folio.exclusive = folio.all_pages_mask
        add_run(table, haddr, HPAGE_PMD_NR, folio, 0)
        # Split from a PMD shared after fork: the folio is now partly PTE-mapped, and
        # the last PTE unmapped from a subpage will queue it for deferred split.
    else:
        del table.mm.tables[table.idx]
        kernel.release(folio)


def split_pmd_at(kernel: KernelState, mm: Mm, va: int) -> None:
    """split_huge_pmd_address: split the huge PMD covering va, if there is one."""
    table = mm.tables.get(va >> PMD_SHIFT)
    if table is not None and table.pmd is not None:
        split_pmd(kernel, table)


# --- splitting a folio -------------------------------------------------------------------


def split_folio(kernel: KernelState, folio: Folio) -> bool:
    """split_huge_page: the folio becomes order-0 folios, one per page.

    unmap_folio() first: anon folios go through migration entries and remap_page()
    restores every mapping as PTEs (PMD mappings included, in every process). File
    folios are only unmapped (try_to_unmap; remap_page returns early for them) and
    refault later. __split_huge_page drops page-cache pages beyond i_size.
    The head keeps the folio's identity; tails become new folios.
    """
    if folio.order == 0 or folio.kind == ZERO:
        return False
    if folio.kind == ANON and folio.mapped:
        # unmap_folio → try_to_migrate removes the rmap page by page (a PMD through a
        # freezing PMD split): the first page left with none queues the folio, which
        # split_huge_page_to_list then takes off the queue.
        kernel.deferred_split_huge_page(folio)
    kernel.count_event("thp_split_page")
    kernel.dequeue_deferred_split(folio)
    if folio.kind == ANON:
        for table in list(folio.pmd_maps):
            split_pmd(kernel, table)
    else:
        kernel.unmap_folio_everywhere(folio)
    nr = folio.nr_pages
    tails = [kernel.new_folio(0, folio.kind, folio.file, folio.index + i) for i in range(1, nr)]
    pages = [folio, *tails]
    exclusive = folio.exclusive
    for i, page in enumerate(pages):
        page.exclusive = (exclusive >> i) & 1
        page.dirty = folio.dirty
        page.uptodate = folio.uptodate
    file = folio.file
    if file is not None and folio.in_cache:
        file.remove(folio)
    folio.order = 0
    for run in list(folio.pte_runs):
        table, va, first, count = run.table, run.va, run.pidx, run.npages
        remove_range(table, va, run.end)
        for k in range(count):
            add_run(table, va + (k << PAGE_SHIFT), 1, pages[first + k], 0)
    if file is not None:
        for page in pages:
            if page.index < file.size_pages:
                file.add(page)
    for page in pages:
        kernel.release(page)
    return True


def split_huge_pages_range(kernel: KernelState, mm: Mm, lo: int, hi: int) -> None:
    """debugfs split_huge_pages with <pid>,<lo>,<hi>: split_huge_page on each THP found.

    split_huge_pages_pid walks page by page and stops at the first address without a
    VMA; follow_page(FOLL_DUMP) skips zero pages.
    """
    stop = mm.covered(lo, hi)
    if stop <= lo:
        return
    found: list[Folio] = []
    first, last = lo >> PMD_SHIFT, (stop - 1) >> PMD_SHIFT
    for idx in sorted(i for i in mm.tables if first <= i <= last):
        table = mm.tables[idx]
        if table.pmd is not None:
            found.append(table.pmd)
            continue
        block_lo, block_hi = max(lo, idx << PMD_SHIFT), min(stop, (idx + 1) << PMD_SHIFT)
        found.extend(p.folio for p in pieces(table, block_lo, block_hi))
    done: set[int] = set()
    for folio in found:
        if folio.kind == ZERO or folio.order == 0 or folio.id in done:
            continue
        done.add(folio.id)
        split_folio(kernel, folio)
