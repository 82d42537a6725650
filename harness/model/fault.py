"""Page faults and copy-on-write: what `touch` does to each page it reads or writes.

The walk goes extent by extent: a present PMD or PTE run is skipped in one step unless a
write must break COW, and a fault maps whatever 6.1 would map there (a THP, a PMD of a
shmem folio, a fault-around window of PTEs) before the walk looks again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.model.errors import ModelError
from harness.model.folio import ANON, ZERO, Folio
from harness.model.layout import (
    HPAGE_PMD_ORDER,
    PAGE_SHIFT,
    PAGE_SIZE,
    PMD_SHIFT,
    PTRS_PER_PTE,
    pmd_end,
)
from harness.model.pagetable import Table, add_run, find_run, map_gaps, remove_range, set_pmd
from harness.model.thp import anon_thp_fault_allowed, split_pmd, transhuge_vma_suitable
from harness.model.vma import Vma

if TYPE_CHECKING:
    from harness.model.mm import Mm
    from harness.model.state import KernelState

EFAULT = "EFAULT"  # mmwork reports a SIGSEGV during touch as EFAULT
EIO = "EIO"  # ... and a SIGBUS as EIO


def touch(kernel: KernelState, mm: Mm, lo: int, hi: int, write: bool) -> str | None:
    """Read or write one byte of every page of [lo, hi), in order; the errno if it faults."""
    va = lo
    stalls = 0
    while va < hi:
        vma = mm.find_vma(va)
        if vma is None or vma.prot == "none" or (write and vma.prot != "rw"):
            return EFAULT
        if vma.file is not None and vma.pgoff_at(va) >= vma.file.size_pages:
            return EIO  # beyond i_size: shmem_fault returns VM_FAULT_SIGBUS
        stop = min(hi, vma.end, pmd_end(va))
        progressed = _touch_extent(kernel, mm, vma, va, stop, write)
        if progressed == va:
            stalls += 1
            if stalls > 4:  # every fault maps the faulting page; looping means a model bug
                raise ModelError(f"{mm.name}: no progress touching {va:#x}")
        else:
            stalls = 0
        va = progressed
    return None


def _touch_extent(kernel: KernelState, mm: Mm, vma: Vma, va: int, stop: int, write: bool) -> int:
    """Handle what is at va (within one VMA and one table); return how far the touch got."""
    table = mm.tables.get(va >> PMD_SHIFT)
    if table is None:
        handle_fault(kernel, mm, vma, va, write)
        return va
    if table.pmd is not None:
        if write and not _pmd_write_ok(kernel, vma, table):
            return va  # the PMD was split or zapped; look again at PTE level
        return stop
    run = find_run(table, va)
    if run is None:
        handle_fault(kernel, mm, vma, va, write)
        return va
    end = min(stop, run.end)
    if not write:
        return end
    folio = run.folio
    if folio.kind == ANON:
        _write_anon_ptes(kernel, mm, vma, table, va, end)
    elif folio.kind == ZERO or not vma.shared:
        # The zero page, or a page-cache page in a private mapping: do_wp_page copies
        # every one of them (wp_page_copy), one order-0 page at a time.
        for addr in range(va, end, PAGE_SIZE):
            _wp_page_copy(kernel, mm, vma, table, addr)
    else:
        folio.dirty = True
    return end


def _pmd_write_ok(kernel: KernelState, vma: Vma, table: Table) -> bool:
    """A write to a present PMD: True if it stays, False if it had to be split.

    do_huge_pmd_wp_page (anon): reuse if the head is AnonExclusive or the folio's only
    reference is this mapping; otherwise split the PMD and let the PTE fault COW one
    4K page. The huge zero page always falls back the same way. A private file PMD is
    split (zapped) by wp_huge_pmd; a shared one is writable already.
    """
    folio = table.pmd
    assert folio is not None
    if folio.kind == ANON:
        if folio.exclusive & 1:
            folio.dirty = True
            return True
        if folio.total_mapcount == 1:
            folio.exclusive |= 1  # page_move_anon_rmap
            folio.dirty = True
            return True
        split_pmd(kernel, table)
        return False
    if folio.kind == ZERO or not vma.shared:
        split_pmd(kernel, table)
        return False
    folio.dirty = True
    return True


def _write_anon_ptes(kernel: KernelState, mm: Mm, vma: Vma, table: Table, lo: int, hi: int) -> None:
    """Writes to PTE-mapped anon pages: do_wp_page reuses or copies page by page."""
    run = find_run(table, lo)
    assert run is not None
    folio = run.folio
    first = run.page_at(lo)
    count = (hi - lo) >> PAGE_SHIFT
    wanted = ((1 << count) - 1) << first
    if folio.exclusive & wanted == wanted:
        folio.dirty = True
        return
    for k in range(count):
        addr = lo + (k << PAGE_SHIFT)
        page = first + k
        if folio.exclusive >> page & 1:
            continue
        if folio.total_mapcount == 1:
            # folio_ref_count() == 1: this PTE is the only user; reuse it. For a large
            # folio that only happens once every other page has been unmapped or copied.
            folio.exclusive |= 1 << page
            continue
        _wp_page_copy(kernel, mm, vma, table, addr)
    folio.dirty = True


def _wp_page_copy(kernel: KernelState, mm: Mm, vma: Vma, table: Table, addr: int) -> None:
    """wp_page_copy: a new order-0 anon page replaces the PTE at addr (COW is never large)."""
    kernel.anon_vma_prepare(mm, vma)
    new = kernel.new_anon_folio(0)
    removed = remove_range(table, addr, addr + PAGE_SIZE)
    kernel.page_remove_rmap_ptes(removed)
    for piece in removed:
        kernel.release(piece.folio)
    add_run(table, addr, 1, new, 0)


def handle_fault(kernel: KernelState, mm: Mm, vma: Vma, va: int, write: bool) -> None:
    """A fault on a not-present page at va; maps at least that page."""
    if vma.anonymous:
        _anonymous_fault(kernel, mm, vma, va, write)
    elif not write:
        _read_fault(kernel, mm, vma, va)
    elif not vma.shared:
        _cow_fault(kernel, mm, vma, va)
    else:
        _shared_fault(kernel, mm, vma, va)


def _anonymous_fault(kernel: KernelState, mm: Mm, vma: Vma, va: int, write: bool) -> None:
    idx = va >> PMD_SHIFT
    if idx not in mm.tables and anon_thp_fault_allowed(kernel, vma, va):
        # do_huge_pmd_anonymous_page: anon_vma_prepare first, then the huge zero page
        # for a read (use_zero_page defaults to 1) or a new PMD-mapped THP for a write.
        kernel.anon_vma_prepare(mm, vma)
        table = mm.ensure_table(idx)
        if write:
            folio = kernel.new_anon_folio(HPAGE_PMD_ORDER)
            set_pmd(table, folio)
        else:
            set_pmd(table, kernel.huge_zero_page)
        return
    table = mm.ensure_table(idx)
    if not write:
        # do_anonymous_page maps the zero page read-only, without an anon_vma.
        add_run(table, va, 1, kernel.zero_page, 0)
        return
    kernel.anon_vma_prepare(mm, vma)
    add_run(table, va, 1, kernel.new_anon_folio(0), 0)


def _read_fault(kernel: KernelState, mm: Mm, vma: Vma, va: int) -> None:
    """do_read_fault: fault-around first (unless fault_around_bytes is one page), then
    ->fault for the page itself if fault-around did not map it."""
    if kernel.setup.fault_around_pages > 1:
        _fault_around(kernel, mm, vma, va)
    table = mm.tables.get(va >> PMD_SHIFT)
    if table is not None and (table.pmd is not None or find_run(table, va) is not None):
        return
    folio = kernel.shmem_get_folio(vma.file, vma.pgoff_at(va), vma, "cache")  # type: ignore[arg-type]
    _finish_fault(kernel, mm, vma, va, folio)


def _cow_fault(kernel: KernelState, mm: Mm, vma: Vma, va: int) -> None:
    """do_cow_fault: the page-cache folio is looked up (allocated if a hole), an order-0
    anon copy is mapped; finish_fault never maps the copy with a PMD."""
    assert vma.file is not None
    kernel.shmem_get_folio(vma.file, vma.pgoff_at(va), vma, "cache")
    kernel.anon_vma_prepare(mm, vma)
    table = mm.ensure_table(va >> PMD_SHIFT)
    add_run(table, va, 1, kernel.new_anon_folio(0), 0)


def _shared_fault(kernel: KernelState, mm: Mm, vma: Vma, va: int) -> None:
    """do_shared_fault: no fault-around for writes; finish_fault maps the page (or PMD)."""
    assert vma.file is not None
    folio = kernel.shmem_get_folio(vma.file, vma.pgoff_at(va), vma, "cache")
    folio.dirty = True
    _finish_fault(kernel, mm, vma, va, folio)


def _finish_fault(kernel: KernelState, mm: Mm, vma: Vma, va: int, folio: Folio) -> None:
    """finish_fault: a PMD if the PMD entry is none and do_set_pmd agrees, else one PTE."""
    idx = va >> PMD_SHIFT
    if idx not in mm.tables and folio.order > 0 and _do_set_pmd(mm, vma, va, folio):
        return
    table = mm.ensure_table(idx)
    add_run(table, va, 1, folio, vma.pgoff_at(va) - folio.index)


def _do_set_pmd(mm: Mm, vma: Vma, va: int, folio: Folio) -> bool:
    """do_set_pmd: only a PMD-order folio, only where transhuge_vma_suitable()."""
    if folio.order != HPAGE_PMD_ORDER or not transhuge_vma_suitable(vma, va):
        return False
    table = mm.ensure_table(va >> PMD_SHIFT)
    set_pmd(table, folio)
    return True


def _fault_around(kernel: KernelState, mm: Mm, vma: Vma, va: int) -> None:
    """do_fault_around + filemap_map_pages for a read fault on a file mapping.

    The window is fault_around_bytes (a power of two) aligned, starting no lower than the
    VMA, clipped to the page table, the VMA and i_size. Only uptodate page-cache folios
    are mapped (fallocated ones are not), and only into none PTEs. If the first folio
    found is PMD-sized and the PMD entry is none, filemap_map_pmd tries do_set_pmd
    instead. With the series' fault_around_whole_folio (patch 0004), each large folio
    the window meets is mapped from its first to its last page inside the VMA, the page
    table and i_size (filemap_whole_folio_range), even outside the window; the lookup
    still stops at the window's end.
    """
    file = vma.file
    assert file is not None
    nr_pages = kernel.setup.fault_around_pages
    address = max(va & ~(nr_pages * PAGE_SIZE - 1), vma.start)
    off = ((va - address) >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)
    start_pgoff = vma.pgoff_at(va) - off
    end_pgoff = start_pgoff - ((address >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)) + PTRS_PER_PTE - 1
    end_pgoff = min(end_pgoff, vma.pgoff + vma.npages - 1, start_pgoff + nr_pages - 1)
    folios = [
        f
        for f in file.folios_between(start_pgoff, end_pgoff)
        if f.uptodate and not f.reclaim and max(start_pgoff, f.index) < file.size_pages
    ]
    if not folios:
        return
    idx = va >> PMD_SHIFT
    table = mm.tables.get(idx)
    if table is not None and table.pmd is not None:
        return
    if table is None:
        if folios[0].order > 0 and _do_set_pmd(mm, vma, va, folios[0]):
            return
        table = mm.ensure_table(idx)
    file_end = file.size_pages - 1
    last = min(end_pgoff, file_end)
    for folio in folios:
        first_index = max(start_pgoff, folio.index)
        last_index = min(last, folio.index + folio.nr_pages - 1)
        if first_index > last_index:
            continue
        if folio.order > 0 and kernel.setup.fault_around_whole_folio:
            first_index, last_index = _whole_folio_range(vma, folio, first_index, file_end)
        lo = vma.va_of(first_index)
        hi = vma.va_of(last_index + 1)
        map_gaps(table, lo, hi, folio, first_index - folio.index)


def _whole_folio_range(vma: Vma, folio: Folio, index: int, file_end: int) -> tuple[int, int]:
    """filemap_whole_folio_range: the folio's pages around index that the page table
    mapping index (at its address in this VMA) can map, inside the VMA and below EOF."""
    addr = vma.va_of(index)
    pt_idx = (addr >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)
    back = min(index - folio.index, (addr - vma.start) >> PAGE_SHIFT, pt_idx)
    fwd = min(
        folio.index + folio.nr_pages - 1 - index,
        ((vma.end - addr) >> PAGE_SHIFT) - 1,
        PTRS_PER_PTE - 1 - pt_idx,
    )
    return index - back, min(index + fwd, file_end)
