"""mremap's page-table move (mm/mremap.c move_page_tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.model.layout import PMD_SHIFT, PMD_SIZE
from harness.model.pagetable import move_runs, retarget
from harness.model.thp import split_pmd

if TYPE_CHECKING:
    from harness.model.mm import Mm
    from harness.model.state import KernelState


def move_page_tables(kernel: KernelState, mm: Mm, old: int, new: int, length: int) -> None:
    """Move the mappings of [old, old + length) to new, extent by extent.

    An extent stops at the next 2 MiB boundary of either side (get_extent). A whole
    extent with a none destination entry moves as one: the huge PMD (move_huge_pmd) or
    the PTE table itself (move_normal_pmd, x86 has HAVE_MOVE_PMD). Otherwise a huge
    PMD is split first (anon: PTEs; file: zapped) and the PTEs move (move_ptes). No rmap
    call is made, so mapcounts do not change; W can, as tables and VMAs change.
    """
    end = old + length
    while old < end:
        extent = min(end - old, PMD_SIZE - old % PMD_SIZE, PMD_SIZE - new % PMD_SIZE)
        src_idx, dst_idx = old >> PMD_SHIFT, new >> PMD_SHIFT
        table = mm.tables.get(src_idx)
        if table is not None:
            whole = extent == PMD_SIZE and dst_idx not in mm.tables
            if table.pmd is not None and not whole:
                split_pmd(kernel, table)
                table = mm.tables.get(src_idx)
            if table is not None and whole:
                del mm.tables[src_idx]
                retarget(table, dst_idx, new - old)
                mm.tables[dst_idx] = table
            elif table is not None:
                move_runs(table, old, old + extent, mm.ensure_table(dst_idx), new - old)
        old += extent
        new += extent
