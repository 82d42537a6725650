"""x86-64 geometry the model assumes: 4 KiB pages, 512 entries per table, 2 MiB PMDs."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Protocol, TypeVar

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PTRS_PER_PTE = 512
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
HPAGE_PMD_ORDER = PMD_SHIFT - PAGE_SHIFT
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER


def pmd_index(va: int) -> int:
    """Which PTE table (2 MiB block) an address falls in."""
    return va >> PMD_SHIFT


def pmd_start(va: int) -> int:
    return va & ~(PMD_SIZE - 1)


def pmd_end(va: int) -> int:
    """The first address of the next 2 MiB block."""
    return pmd_start(va) + PMD_SIZE


def pages(nbytes: int) -> int:
    return nbytes >> PAGE_SHIFT


class _Extent(Protocol):
    @property
    def end(self) -> int: ...


E = TypeVar("E", bound=_Extent)


def overlapping(starts: list[int], extents: Sequence[E], lo: int, hi: int) -> list[E]:
    """The extents intersecting [lo, hi): `extents` sorted, disjoint, `starts` their starts."""
    i = max(bisect_right(starts, lo) - 1, 0)
    found: list[E] = []
    while i < len(extents) and starts[i] < hi:
        if extents[i].end > lo:
            found.append(extents[i])
        i += 1
    return found
