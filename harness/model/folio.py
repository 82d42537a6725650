"""Folios and the shmem page cache they can belong to.

A folio keeps its own reverse map (the PTE runs and PMD entries that map it) so counting
its mappings never walks page tables. Its anon-exclusive flags are a bitmask, bit i being
PageAnonExclusive of page i; while the folio is PMD-mapped only bit 0 (the head) matters,
as in 6.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.model.layout import HPAGE_PMD_NR

if TYPE_CHECKING:
    from harness.model.pagetable import PteRun, Table

ANON = "anon"
SHMEM = "shmem"
FILE = "file"  # page cache of a regular file system; the workload language has none yet
ZERO = "zero"


class Folio:
    __slots__ = (
        "deferred_split",
        "dirty",
        "exclusive",
        "file",
        "id",
        "in_cache",
        "index",
        "kind",
        "order",
        "pmd_maps",
        "pte_pages",
        "pte_runs",
        "reclaim",
        "uptodate",
    )

    def __init__(
        self, folio_id: int, order: int, kind: str, file: ShmemFile | None = None, index: int = 0
    ) -> None:
        self.id = folio_id
        self.order = order
        self.kind = kind
        self.file = file
        self.index = index  # page-cache index of page 0 (file folios)
        self.in_cache = False
        self.uptodate = True
        self.dirty = False
        # PG_reclaim, which is PG_readahead's bit: fault-around skips the folio.
        self.reclaim = False
        self.exclusive = 0  # bit i: PageAnonExclusive(page i)
        self.deferred_split = False
        self.pte_runs: set[PteRun] = set()
        self.pmd_maps: set[Table] = set()
        self.pte_pages = 0  # pages mapped by PTEs, summed over every mapping

    @property
    def nr_pages(self) -> int:
        return 1 << self.order

    @property
    def entire_mapcount(self) -> int:
        """E: PMD mappings (6.1 folio_entire_mapcount / compound_mapcount)."""
        return len(self.pmd_maps)

    @property
    def total_mapcount(self) -> int:
        """T: 6.1 folio_mapcount, PMD mappings plus every PTE mapping.

        For an anon folio this is also its reference count (one per mapping), which is
        what the COW paths compare with 1 before reusing a page.
        """
        return len(self.pmd_maps) + self.pte_pages

    @property
    def mapped(self) -> bool:
        return bool(self.pmd_maps) or self.pte_pages > 0

    @property
    def all_pages_mask(self) -> int:
        return (1 << self.nr_pages) - 1

    def __repr__(self) -> str:
        return f"Folio(#{self.id} {self.kind} order {self.order} T={self.total_mapcount})"


class ShmemFile:
    """A shmem inode: memfd, tmpfs file, or the object behind a MAP_SHARED|MAP_ANONYMOUS map.

    `cache` maps the page-cache index of each folio's first page to the folio. Large
    shmem folios are PMD-order and naturally aligned in 6.1, so the folio holding an
    index is found at the index itself or at the index rounded down to 512.
    """

    def __init__(self, name: str, kind: str, size_pages: int, sb_huge: str) -> None:
        self.name = name
        self.kind = kind  # memfd | tmpfs | anon_shared
        self.size_pages = size_pages
        self.sb_huge = sb_huge  # the superblock's huge= (shm_mnt follows shmem_enabled)
        self.cache: dict[int, Folio] = {}
        self._per_block: dict[int, int] = {}  # entries per 512-index block
        # On its superblock's shrinklist: a PMD folio sticks out past i_size.
        self.on_shrinklist = False

    def lookup(self, index: int) -> Folio | None:
        folio = self.cache.get(index)
        if folio is not None:
            return folio
        folio = self.cache.get(index & ~(HPAGE_PMD_NR - 1))
        if folio is not None and folio.order > 0:
            return folio
        return None

    def block_has_entries(self, hindex: int) -> bool:
        """shmem_alloc_hugefolio's xa_find over [hindex, hindex + 511]."""
        return self._per_block.get(hindex // HPAGE_PMD_NR, 0) > 0

    def add(self, folio: Folio) -> None:
        self.cache[folio.index] = folio
        folio.in_cache = True
        block = folio.index // HPAGE_PMD_NR
        self._per_block[block] = self._per_block.get(block, 0) + 1

    def remove(self, folio: Folio) -> None:
        del self.cache[folio.index]
        folio.in_cache = False
        block = folio.index // HPAGE_PMD_NR
        self._per_block[block] -= 1

    def folios_between(self, first: int, last: int) -> list[Folio]:
        """Folios holding any index in [first, last], in index order."""
        found: list[Folio] = []
        if last - first + 1 <= 4 * HPAGE_PMD_NR:
            index = first
            while index <= last:
                folio = self.lookup(index)
                if folio is None:
                    index += 1
                    continue
                found.append(folio)
                index = folio.index + folio.nr_pages
            return found
        for start in sorted(self.cache):
            folio = self.cache[start]
            if start <= last and start + folio.nr_pages - 1 >= first:
                found.append(folio)
        return found
