"""The modelled kernel: processes, files and folios, and the system calls of a workload.

Each operation returns None on success or the errno name the guest should report.
Addresses are absolute, exactly as in the guest script.
"""

from __future__ import annotations

from harness.model import fault, mremap, reclaim, shmem
from harness.model.errors import ModelError
from harness.model.folio import ANON, ZERO, Folio, ShmemFile
from harness.model.layout import (
    HPAGE_PMD_ORDER,
    PAGE_SHIFT,
    PMD_SHIFT,
    PMD_SIZE,
)
from harness.model.mm import Mm
from harness.model.pagetable import (
    Piece,
    add_run,
    clear_pmd,
    pieces,
    remove_range,
    set_pmd,
)
from harness.model.thp import split_folio, split_huge_pages_range, split_pmd, split_pmd_at
from harness.model.vma import (
    Vma,
    anon_vma_compatible,
    can_merge_after,
    can_merge_before,
    three_way_anon_ok,
)
from harness.workload import Setup

ENOMEM = "ENOMEM"
EFAULT = "EFAULT"


class Kernel:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.mms: dict[str, Mm] = {"main": Mm("main")}
        self.files: dict[str, ShmemFile] = {}  # by workload file name: the inode
        self.struct_files: dict[str, int] = {}  # by workload file name: which open
        self.shared_anon: list[ShmemFile] = []  # objects behind MAP_SHARED|MAP_ANONYMOUS
        self.folios: dict[int, Folio] = {}
        self._next_folio = 1
        self._next_anon_vma = 1
        self.zero_page = Folio(0, 0, ZERO)
        self.huge_zero_page = Folio(-1, HPAGE_PMD_ORDER, ZERO)
        # The deferred split queue (ds_queue->split_queue), in list_add_tail order.
        self.deferred_split_queue: list[Folio] = []
        # vm events the model predicts exactly (/proc/vmstat deltas over a scenario).
        self.events: dict[str, int] = {}

    # --- folios --------------------------------------------------------------------------

    def new_folio(
        self, order: int, kind: str, file: ShmemFile | None = None, index: int = 0
    ) -> Folio:
        folio = Folio(self._next_folio, order, kind, file, index)
        self._next_folio += 1
        self.folios[folio.id] = folio
        return folio

    def new_anon_folio(self, order: int) -> Folio:
        """A freshly faulted anon folio: exclusive, dirty (it is about to be written).

        page_add_new_anon_rmap sets PageAnonExclusive on the head only; a PMD split
        copies it to the subpages (__split_huge_pmd_locked).
        """
        folio = self.new_folio(order, ANON)
        folio.exclusive = 1
        folio.dirty = True
        return folio

    def count_event(self, name: str, n: int = 1) -> None:
        """count_vm_event: a /proc/vmstat event the comparison checks."""
        self.events[name] = self.events.get(name, 0) + n

    def release(self, folio: Folio) -> None:
        """After a mapping went away: free the folio if nothing holds it any more.

        Freeing takes a large folio off the deferred split queue (free_transhuge_page).
        """
        if folio.kind == ZERO:
            return
        if not folio.mapped and not folio.in_cache:
            self.folios.pop(folio.id, None)
            self.dequeue_deferred_split(folio)

    def deferred_split_huge_page(self, folio: Folio) -> None:
        """Queue an anon THP for the deferred split shrinker, once (THP_DEFERRED_SPLIT_PAGE)."""
        if folio.deferred_split:
            return
        folio.deferred_split = True
        self.deferred_split_queue.append(folio)
        self.count_event("thp_deferred_split_page")

    def dequeue_deferred_split(self, folio: Folio) -> None:
        if folio.deferred_split:
            folio.deferred_split = False
            self.deferred_split_queue.remove(folio)

    def page_remove_rmap_ptes(self, removed: list[Piece]) -> None:
        """page_remove_rmap(compound=false) for PTEs just cleared.

        A page of an anon THP whose _mapcount goes negative (no PTE maps it any more, and
        no PMD does: a PMD mapping beside PTE mappings keeps PG_double_map's bias on every
        subpage) queues the folio for deferred split. Not every partial unmap does: a page
        still mapped by another process keeps its count.
        """
        for piece in removed:
            folio = piece.folio
            if folio.kind != ANON or folio.order == 0 or folio.pmd_maps:
                continue
            if not folio.deferred_split and _has_unmapped_page(
                folio, piece.pidx, piece.pidx + piece.npages
            ):
                self.deferred_split_huge_page(folio)

    def page_remove_anon_compound_rmap(self, folio: Folio) -> None:
        """The last PMD of an anon THP went: with PG_double_map set (PTE mappings exist
        beside it), pages no PTE maps drop to -1, and if some but not all do, the folio
        is queued for deferred split."""
        if folio.kind != ANON or folio.pmd_maps or folio.pte_pages == 0:
            return
        if _has_unmapped_page(folio, 0, folio.nr_pages):
            self.deferred_split_huge_page(folio)

    def deferred_split_scan(self) -> None:
        """The deferred split shrinker (drop_slab runs every shrinker): split every queued
        folio; pages that no mapping holds afterwards are freed by the split."""
        for folio in list(self.deferred_split_queue):
            split_folio(self, folio)

    def unmap_folio_everywhere(self, folio: Folio) -> None:
        """try_to_unmap on a file folio: every PMD (zapped, PMD entry none) and PTE goes."""
        for table in list(folio.pmd_maps):
            clear_pmd(table)
            del table.mm.tables[table.idx]
        for run in list(folio.pte_runs):
            remove_range(run.table, run.va, run.end)
        self.release(folio)

    def shmem_get_folio(self, file: ShmemFile, index: int, vma: Vma | None, sgp: str) -> Folio:
        return shmem.get_folio(self, file, index, vma, sgp)

    # --- anon_vma ------------------------------------------------------------------------

    def anon_vma_prepare(self, mm: Mm, vma: Vma) -> None:
        """__anon_vma_prepare: reuse a neighbour's anon_vma if find_mergeable_anon_vma allows."""
        if vma.anon_vma is not None:
            return
        reuse: int | None = None
        nxt, prev = mm.next_vma(vma), mm.prev_vma(vma)
        if nxt is not None and nxt.chain_len == 1 and anon_vma_compatible(vma, nxt):
            reuse = nxt.anon_vma
        elif prev is not None and prev.chain_len == 1 and anon_vma_compatible(prev, vma):
            reuse = prev.anon_vma
        if reuse is None:
            reuse = self._next_anon_vma
            self._next_anon_vma += 1
        vma.anon_vma = reuse
        vma.chain_len = 1

    # --- VMAs ----------------------------------------------------------------------------

    def split_vma(self, mm: Mm, vma: Vma, addr: int) -> Vma:
        """__split_vma at addr; returns the upper part. vma_adjust_trans_huge splits a huge
        PMD that the new boundary cuts."""
        assert vma.start < addr < vma.end
        if addr % PMD_SIZE:
            split_pmd_at(self, mm, addr)
        upper = vma.copy(start=addr, pgoff=vma.pgoff_at(addr))
        vma.end = addr
        mm.insert_vma(upper)
        return upper

    def isolate(self, mm: Mm, vma: Vma, lo: int, hi: int) -> Vma:
        """The part [lo, hi) of vma as a VMA of its own."""
        if lo > vma.start:
            vma = self.split_vma(mm, vma, lo)
        if hi < vma.end:
            self.split_vma(mm, vma, hi)
        return vma

    def vma_merge(self, mm: Mm, vma: Vma) -> Vma:
        """vma_merge for a VMA whose flags just changed or that was just created."""
        prev, nxt = mm.prev_vma(vma), mm.next_vma(vma)
        with_prev = prev is not None and can_merge_after(prev, vma)
        with_next = nxt is not None and can_merge_before(nxt, vma)
        if with_prev and with_next:
            assert prev is not None and nxt is not None
            with_next = three_way_anon_ok(prev, nxt)
        anon_vma, chain_len = vma.anon_vma, vma.chain_len
        if with_prev:
            assert prev is not None
            if prev.anon_vma is not None:
                anon_vma, chain_len = prev.anon_vma, prev.chain_len
            mm.remove_vma(vma)
            prev.end = vma.end
            vma = prev
        if with_next:
            assert nxt is not None
            if anon_vma is None:
                anon_vma, chain_len = nxt.anon_vma, nxt.chain_len
            mm.remove_vma(nxt)
            vma.end = nxt.end
        vma.anon_vma, vma.chain_len = anon_vma, chain_len
        return vma

    def _change_flags(
        self, mm: Mm, lo: int, hi: int, stop_at_hole: bool, **flags: object
    ) -> str | None:
        """mprotect_fixup / madvise_update_vma over [lo, hi): split, change, merge.

        A hole makes both fail with ENOMEM; mprotect stops there, madvise carries on with
        the VMAs after it (madvise_walk_vmas).
        """
        covered = mm.covered(lo, hi)
        end = covered if stop_at_hole else hi
        for vma in mm.vmas_in(lo, end):
            if mm.find_vma(vma.start) is not vma:
                continue  # merged into a VMA already handled
            new = {k: v for k, v in flags.items() if getattr(vma, k) != v}
            if new.get("prot") == "rw" and not vma.shared:
                new["account"] = True  # mprotect_fixup charges a private writable mapping
            new = {k: v for k, v in new.items() if getattr(vma, k) != v}
            if not new:
                continue
            piece = self.isolate(mm, vma, max(lo, vma.start), min(end, vma.end))
            for key, value in new.items():
                setattr(piece, key, value)
            self.vma_merge(mm, piece)
        return None if covered == hi else ENOMEM

    # --- page tables ---------------------------------------------------------------------

    def zap_range(self, mm: Mm, lo: int, hi: int, keep_anon: bool = False) -> None:
        """unmap_page_range over [lo, hi): whole PMDs go, partial ones are split first."""
        first, last = lo >> PMD_SHIFT, (hi - 1) >> PMD_SHIFT
        for idx in sorted(i for i in mm.tables if first <= i <= last):
            table = mm.tables[idx]
            block_lo, block_hi = max(lo, idx << PMD_SHIFT), min(hi, (idx + 1) << PMD_SHIFT)
            if table.pmd is not None:
                if keep_anon and table.pmd.kind == ANON:
                    continue
                if block_hi - block_lo == PMD_SIZE:
                    folio = clear_pmd(table)  # zap_huge_pmd leaves the PMD entry none
                    del mm.tables[idx]
                    self.page_remove_anon_compound_rmap(folio)
                    self.release(folio)
                    continue
                split_pmd(self, table)
                if idx not in mm.tables:
                    continue
            removed = remove_range(table, block_lo, block_hi, keep_anon)
            self.page_remove_rmap_ptes(removed)
            for folio in {id(p.folio): p.folio for p in removed}.values():
                self.release(folio)

    def free_pgtables(self, mm: Mm, lo: int, hi: int) -> None:
        """free_pgtables after an unmap: tables whose 2 MiB no VMA touches any more."""
        first, last = lo >> PMD_SHIFT, (hi - 1) >> PMD_SHIFT
        for idx in [i for i in mm.tables if first <= i <= last]:
            if mm.vmas_in(idx << PMD_SHIFT, (idx + 1) << PMD_SHIFT):
                continue
            table = mm.tables.pop(idx)
            if table.pmd is not None or table.runs:
                raise ModelError(
                    f"{mm.name}: page table at {idx << PMD_SHIFT:#x} maps pages outside any VMA"
                )

    def _forget_unmapped_shared_anon(self) -> None:
        """A MAP_SHARED|MAP_ANONYMOUS object dies with its last mapping."""
        used = {id(v.file) for mm in self.mms.values() for v in mm.vmas if v.file is not None}
        for obj in [o for o in self.shared_anon if id(o) not in used]:
            for folio in list(obj.cache.values()):
                obj.remove(folio)
                self.release(folio)
            self.shared_anon.remove(obj)

    # --- operations ----------------------------------------------------------------------

    def spawn(self, proc: str) -> str | None:
        self.mms[proc] = Mm(proc)
        return None

    def exit(self, proc: str) -> str | None:
        mm = self.mms.pop(proc)
        for vma in list(mm.vmas):
            self.zap_range(mm, vma.start, vma.end)
        mm.tables.clear()
        mm.vmas.clear()
        self._forget_unmapped_shared_anon()
        return None

    def fork(self, parent_name: str, child_name: str) -> str | None:
        """dup_mmap: every VMA is copied; page tables only where the VMA has an anon_vma.

        copy_page_range skips VMAs without one (they refault). copy_huge_pmd copies anon
        PMDs (and the huge zero page) but never file PMDs. Anon pages lose
        PageAnonExclusive (page_try_dup_anon_rmap); file pages are shared as they are.
        """
        parent = self.mms[parent_name]
        child = Mm(child_name)
        self.mms[child_name] = child
        for vma in parent.vmas:
            copy = vma.copy()
            if vma.anon_vma is not None:
                copy.anon_vma = self._next_anon_vma
                self._next_anon_vma += 1
                copy.chain_len = vma.chain_len + 1
            child.insert_vma(copy)
            if vma.anon_vma is not None:
                self._copy_tables(parent, child, vma)
        return None

    def _copy_tables(self, parent: Mm, child: Mm, vma: Vma) -> None:
        first, last = vma.start >> PMD_SHIFT, (vma.end - 1) >> PMD_SHIFT
        for idx in sorted(i for i in parent.tables if first <= i <= last):
            table = parent.tables[idx]
            if table.pmd is not None:
                folio = table.pmd
                if vma.anonymous:
                    set_pmd(child.ensure_table(idx), folio)
                    if folio.kind == ANON:
                        folio.exclusive &= ~1
                continue
            target = child.ensure_table(idx)
            lo, hi = max(vma.start, idx << PMD_SHIFT), min(vma.end, (idx + 1) << PMD_SHIFT)
            for piece in pieces(table, lo, hi):
                add_run(target, piece.va, piece.npages, piece.folio, piece.pidx)
                if piece.folio.kind == ANON:
                    piece.folio.exclusive &= ~(((1 << piece.npages) - 1) << piece.pidx)

    def create_file(
        self, name: str, kind: str, path: str | None, size: int, populate: str
    ) -> str | None:
        if kind == "tmpfs":
            mount = self.setup.mount_for(path or "")
            sb_huge = mount.huge if mount else "never"
        else:
            sb_huge = shmem.shm_mnt_huge(self.setup)
        file = ShmemFile(name, kind, size >> PAGE_SHIFT, sb_huge)
        self.files[name] = file
        self.struct_files[name] = len(self.struct_files) + 1
        shmem.populate(self, file, populate)
        return None

    def open_again(self, name: str, of: str) -> str | None:
        """open("/proc/self/fd/N"): a new struct file of the same inode."""
        self.files[name] = self.files[of]
        self.struct_files[name] = len(self.struct_files) + 1
        return None

    def mmap(
        self,
        proc: str,
        addr: int,
        length: int,
        file_name: str | None,
        file_offset: int,
        shared: bool,
        prot: str,
    ) -> str | None:
        mm = self.mms[proc]
        if mm.vmas_in(addr, addr + length):
            return "EEXIST"  # MAP_FIXED_NOREPLACE
        file: ShmemFile | None = None
        handle = 0
        if file_name is not None:
            file = self.files[file_name]
            handle = self.struct_files[file_name]
            pgoff = file_offset >> PAGE_SHIFT
        elif shared:
            # shmem_zero_setup: a new object on shm_mnt, offset 0 at the start.
            file = ShmemFile(
                "dev/zero", "anon_shared", length >> PAGE_SHIFT, shmem.shm_mnt_huge(self.setup)
            )
            self.shared_anon.append(file)
            pgoff = 0
        else:
            pgoff = addr >> PAGE_SHIFT
        vma = Vma(
            addr,
            addr + length,
            prot,
            shared,
            file,
            pgoff,
            account=not shared and prot == "rw",
            file_handle=handle,
        )
        mm.insert_vma(vma)
        self.vma_merge(mm, vma)
        return None

    def munmap(self, proc: str, lo: int, hi: int) -> str | None:
        mm = self.mms[proc]
        vmas = mm.vmas_in(lo, hi)
        if not vmas:
            return None
        if vmas[0].start < lo:
            self.split_vma(mm, vmas[0], lo)
        last = mm.vmas_in(lo, hi)[-1]
        if last.end > hi:
            self.split_vma(mm, last, hi)
        self.zap_range(mm, lo, hi)
        for vma in mm.vmas_in(lo, hi):
            mm.remove_vma(vma)
        self.free_pgtables(mm, lo, hi)
        self._forget_unmapped_shared_anon()
        return None

    def mremap(self, proc: str, old: int, length: int, new: int) -> str | None:
        """MREMAP_MAYMOVE|MREMAP_FIXED of [old, old + length) to new (same length)."""
        mm = self.mms[proc]
        if new < old + length and old < new + length:
            return "EINVAL"  # mremap_to refuses overlapping ranges
        vma = mm.find_vma(old)
        if vma is None or old + length > vma.end:
            return EFAULT  # vma_to_resize: the range must lie in one VMA
        if mm.vmas_in(new, new + length):
            self.munmap(proc, new, new + length)  # mremap_to unmaps the destination
            vma = mm.find_vma(old)
            assert vma is not None
        # copy_vma: an anonymous VMA never faulted takes the new address as its offset.
        pgoff = vma.pgoff_at(old)
        if vma.anonymous and vma.anon_vma is None:
            pgoff = new >> PAGE_SHIFT
        moved = vma.copy(start=new, end=new + length, pgoff=pgoff)
        mm.insert_vma(moved)
        self.vma_merge(mm, moved)
        mremap.move_page_tables(self, mm, old, new, length)
        self.munmap(proc, old, old + length)
        return None

    def mprotect(self, proc: str, lo: int, hi: int, prot: str) -> str | None:
        return self._change_flags(self.mms[proc], lo, hi, stop_at_hole=True, prot=prot)

    def madvise(self, proc: str, lo: int, hi: int, advice: str) -> str | None:
        mm = self.mms[proc]
        if advice in ("hugepage", "nohugepage"):
            return self._change_flags(mm, lo, hi, stop_at_hole=False, thp=advice)
        covered = mm.covered(lo, hi)
        for vma in mm.vmas_in(lo, hi):
            vlo, vhi = max(lo, vma.start), min(hi, vma.end)
            if advice == "dontneed":
                self.zap_range(mm, vlo, vhi)  # madvise_dontneed_single_vma
            else:
                reclaim.cold_or_pageout(self, mm, vlo, vhi, pageout=advice == "pageout")
        return None if covered == hi else ENOMEM

    def touch(self, proc: str, lo: int, hi: int, write: bool) -> str | None:
        return fault.touch(self, self.mms[proc], lo, hi, write)

    def punch(self, file_name: str, offset: int, length: int) -> str | None:
        shmem.punch_hole(self, self.files[file_name], offset, length)
        return None

    def split(self, proc: str, lo: int, hi: int) -> str | None:
        split_huge_pages_range(self, self.mms[proc], lo, hi)
        return None

    def drop_caches(self) -> str | None:
        """drop_caches_sysctl_handler with 3: the page cache of every superblock, then
        drop_slab(), which runs every shrinker, the deferred split one included."""
        files = [*{id(f): f for f in self.files.values()}.values(), *self.shared_anon]
        shmem.drop_caches(self, files)
        self.deferred_split_scan()
        shmem.unused_huge_shrink(self, files)
        return None

    def live_folios(self) -> list[Folio]:
        return list(self.folios.values())


def _has_unmapped_page(folio: Folio, lo: int, hi: int) -> bool:
    """Whether some page in [lo, hi) of the folio has no PTE mapping left."""
    covering = sorted(
        (run.pidx, run.pidx + run.npages)
        for run in folio.pte_runs
        if run.pidx < hi and run.pidx + run.npages > lo
    )
    at = lo
    for start, end in covering:
        if start > at:
            return True
        at = max(at, end)
        if at >= hi:
            return False
    return at < hi
