"""The kernel state the lower layers work on: what fault, thp, shmem, reclaim and mremap
may ask of the modelled kernel. kernel.Kernel implements it; naming the interface here
keeps the imports one way (kernel -> those layers -> state), not a cycle through Kernel.
"""

from __future__ import annotations

from typing import Protocol

from harness.model.folio import Folio, ShmemFile
from harness.model.mm import Mm
from harness.model.pagetable import Piece
from harness.model.vma import Vma
from harness.workload import Setup


class KernelState(Protocol):
    setup: Setup
    mms: dict[str, Mm]
    zero_page: Folio
    huge_zero_page: Folio

    def new_folio(
        self, order: int, kind: str, file: ShmemFile | None = None, index: int = 0
    ) -> Folio: ...

    def new_anon_folio(self, order: int) -> Folio: ...

    def release(self, folio: Folio) -> None: ...

    def count_event(self, name: str, n: int = 1) -> None: ...

    def dequeue_deferred_split(self, folio: Folio) -> None: ...

    def deferred_split_huge_page(self, folio: Folio) -> None: ...

    def page_remove_rmap_ptes(self, removed: list[Piece]) -> None: ...

    def unmap_folio_everywhere(self, folio: Folio) -> None: ...

    def shmem_get_folio(self, file: ShmemFile, index: int, vma: Vma | None, sgp: str) -> Folio: ...

    def anon_vma_prepare(self, mm: Mm, vma: Vma) -> None: ...

    def zap_range(self, mm: Mm, lo: int, hi: int, keep_anon: bool = False) -> None: ...
