"""One process's address space: its VMAs, sorted, and its page tables by 2 MiB block."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from harness.model.layout import overlapping
from harness.model.pagetable import Table
from harness.model.vma import Vma


class Mm:
    def __init__(self, name: str) -> None:
        self.name = name
        self.vmas: list[Vma] = []
        self._starts: list[int] = []
        self.tables: dict[int, Table] = {}

    # --- VMAs ----------------------------------------------------------------------------

    def find_vma(self, va: int) -> Vma | None:
        """The VMA containing va (vma_lookup)."""
        i = bisect_right(self._starts, va) - 1
        if i >= 0 and self.vmas[i].end > va:
            return self.vmas[i]
        return None

    def vmas_in(self, lo: int, hi: int) -> list[Vma]:
        """VMAs intersecting [lo, hi), in address order."""
        return overlapping(self._starts, self.vmas, lo, hi)

    def covered(self, lo: int, hi: int) -> int:
        """The end of the part of [lo, hi) that VMAs cover without a hole, from lo."""
        at = lo
        for vma in self.vmas_in(lo, hi):
            if vma.start > at:
                break
            at = vma.end
        return min(at, hi)

    def prev_vma(self, vma: Vma) -> Vma | None:
        i = self._position(vma)
        return self.vmas[i - 1] if i > 0 else None

    def next_vma(self, vma: Vma) -> Vma | None:
        i = self._position(vma)
        return self.vmas[i + 1] if i + 1 < len(self.vmas) else None

    def insert_vma(self, vma: Vma) -> None:
        i = bisect_left(self._starts, vma.start)
        self.vmas.insert(i, vma)
        self._starts.insert(i, vma.start)

    def remove_vma(self, vma: Vma) -> None:
        i = self._position(vma)
        del self.vmas[i]
        del self._starts[i]

    def restart(self, vma: Vma, start: int) -> None:
        """Move a VMA's start (its neighbours keep the list sorted)."""
        i = self._position(vma)
        vma.start = start
        self._starts[i] = start

    def _position(self, vma: Vma) -> int:
        i = bisect_left(self._starts, vma.start)
        while self.vmas[i] is not vma:
            i += 1
        return i

    # --- page tables ---------------------------------------------------------------------

    def ensure_table(self, idx: int) -> Table:
        """The PTE table at a 2 MiB block, allocated if the PMD entry is none."""
        table = self.tables.get(idx)
        if table is None:
            table = Table(self, idx)
            self.tables[idx] = table
        return table
