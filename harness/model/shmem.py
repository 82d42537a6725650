"""shmem/tmpfs page cache: which folios 6.1 allocates, hole punching, drop_caches.

Every file of the workload language is shmem: memfd and the MAP_SHARED|MAP_ANONYMOUS
object live on the internal shm_mnt, whose huge= follows shmem_enabled; tmpfs files
take their mount's huge=. shmem_enabled=deny/force override both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.model.folio import SHMEM, Folio, ShmemFile
from harness.model.layout import HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SHIFT
from harness.model.thp import split_folio
from harness.model.vma import Vma
from harness.workload import Setup

if TYPE_CHECKING:
    from harness.model.state import KernelState

_SB_SETTINGS = ("always", "within_size", "advise", "never")


def shm_mnt_huge(setup: Setup) -> str:
    """shmem_enabled_store copies the setting to shm_mnt unless it is deny or force."""
    return setup.shmem_enabled if setup.shmem_enabled in _SB_SETTINGS else "never"


def is_huge(kernel: KernelState, file: ShmemFile, index: int, vma: Vma | None) -> bool:
    """__shmem_is_huge for a new folio at index (vma is None for write/fallocate)."""
    if vma is not None and vma.thp == "nohugepage":
        return False
    global_setting = kernel.setup.shmem_enabled
    if global_setting == "deny":
        return False
    if global_setting == "force":
        return True
    huge = file.sb_huge
    if huge == "always":
        return True
    if huge == "within_size":
        rounded = -(-(index + 1) // HPAGE_PMD_NR) * HPAGE_PMD_NR
        if file.size_pages >= rounded:
            return True
        huge = "advise"
    if huge == "advise":
        return vma is not None and vma.thp == "hugepage"
    return False


def get_folio(kernel: KernelState, file: ShmemFile, index: int, vma: Vma | None, sgp: str) -> Folio:
    """shmem_get_folio_gfp: the folio holding index, allocated if it is a hole.

    sgp: "cache" (a fault), "write" (write(2)) or "falloc" (fallocate, which leaves new
    folios !uptodate so fault-around skips them until a fault clears them). A PMD-sized
    folio is tried when is_huge() says so and no page of its aligned 2 MiB is cached
    yet (shmem_alloc_hugefolio); allocation itself is assumed to succeed.
    """
    folio = file.lookup(index)
    if folio is not None:
        if sgp in ("cache", "write"):
            folio.uptodate = True
        if sgp != "cache":
            folio.dirty = True
        return folio
    hindex = index & ~(HPAGE_PMD_NR - 1)
    if is_huge(kernel, file, index, vma) and not file.block_has_entries(hindex):
        folio = kernel.new_folio(HPAGE_PMD_ORDER, SHMEM, file, hindex)
        if file.size_pages < hindex + HPAGE_PMD_NR - 1:
            # "Part of the large folio is beyond i_size: subject to shrink under memory
            # pressure" (and to drop_caches, which runs the superblock's shrinker).
            file.on_shrinklist = True
    else:
        folio = kernel.new_folio(0, SHMEM, file, index)
    folio.uptodate = sgp != "falloc"
    # A read fault leaves a new page clean; write(2) and fallocate mark it dirty.
    folio.dirty = sgp != "cache"
    file.add(folio)
    return folio


def populate(kernel: KernelState, file: ShmemFile, how: str) -> None:
    """mmwork's `file` step: ftruncate to the size, then pwrite() or fallocate() it all."""
    if how == "none":
        return
    sgp = "write" if how == "write" else "falloc"
    index = 0
    while index < file.size_pages:
        folio = get_folio(kernel, file, index, None, sgp)
        index = folio.index + folio.nr_pages


def punch_hole(kernel: KernelState, file: ShmemFile, offset: int, length: int) -> None:
    """shmem_fallocate(PUNCH_HOLE).

    unmap_mapping_range (without even_cows: COWed anon pages of private mappings stay),
    then shmem_undo_range: folios wholly inside leave the page cache; a large folio
    partly inside is split (truncate_inode_partial_folio → split_folio, which unmaps it
    everywhere) and its pages inside the hole go.
    """
    start, end = offset >> PAGE_SHIFT, (offset + length) >> PAGE_SHIFT
    for mm in list(kernel.mms.values()):
        for vma in [v for v in mm.vmas if v.file is file]:
            first = max(start, vma.pgoff)
            last = min(end, vma.pgoff + vma.npages)
            if first < last:
                kernel.zap_range(mm, vma.va_of(first), vma.va_of(last), keep_anon=True)
    for folio in file.folios_between(start, end - 1):
        if start <= folio.index and folio.index + folio.nr_pages <= end:
            truncate_folio(kernel, folio)
            continue
        first, nr = folio.index, folio.nr_pages
        split_folio(kernel, folio)
        for index in range(max(start, first), min(end, first + nr)):
            page = file.lookup(index)
            if page is not None:
                truncate_folio(kernel, page)


def truncate_folio(kernel: KernelState, folio: Folio) -> None:
    """truncate_inode_folio: unmap what is left, leave the page cache."""
    kernel.unmap_folio_everywhere(folio)
    assert folio.file is not None
    if folio.in_cache:
        folio.file.remove(folio)
    kernel.release(folio)


def unused_huge_shrink(kernel: KernelState, files: list[ShmemFile]) -> None:
    """shmem_unused_huge_shrink, which drop_slab runs through each shmem superblock's
    shrinker: split the PMD folio at i_size of every file on the shrinklist, so that the
    pages past i_size leave the page cache (__split_huge_page drops them)."""
    for file in files:
        if not file.on_shrinklist:
            continue
        file.on_shrinklist = False
        if file.size_pages % HPAGE_PMD_NR == 0:
            continue  # "Check if there's anything to gain"
        folio = file.lookup(file.size_pages & ~(HPAGE_PMD_NR - 1))
        if folio is not None and folio.order > 0:
            split_folio(kernel, folio)


def drop_caches(kernel: KernelState, files: list[ShmemFile]) -> None:
    """drop_pagecache_sb → invalidate_mapping_pages: clean, unmapped folios only.

    mapping_evict_folio refuses dirty or mapped folios; shmem written through write(2),
    fallocate or a write fault is dirty and stays, a page only read-faulted is clean.
    """
    for file in files:
        for folio in list(file.cache.values()):
            if not folio.mapped and not folio.dirty:
                file.remove(folio)
                kernel.release(folio)
            elif not folio.mapped:
                # deactivate_file_folio: lru_deactivate_file_fn sets PG_reclaim on an
                # unmapped dirty folio, and PG_reclaim is PG_readahead's bit, which
                # filemap_map_pages skips: no fault-around over it from now on. A large
                # folio is moved at once; small ones wait in a per-CPU batch of 15,
                # which mmwork drains right after the write to drop_caches (its
                # processes all run on one CPU), so every one of them is marked too.
                folio.reclaim = True
