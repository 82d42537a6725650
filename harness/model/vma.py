"""VMAs and the 6.1 rules for when two of them merge or share an anon_vma.

Only the vm_flags that workloads can change are modelled: protection, VM_SHARED,
VM_ACCOUNT (a private writable mapping is charged, and keeps the charge when made
read-only: mprotect_fixup), and VM_HUGEPAGE / VM_NOHUGEPAGE. An anon_vma is an integer
identity; `chain_len` is the length of the VMA's anon_vma_chain (0 before the first anon
fault, 1 normally, 2 or more in a forked child), which vma_merge() and
find_mergeable_anon_vma() test through list_is_singular().
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.model.folio import ShmemFile
from harness.model.layout import PAGE_SHIFT


@dataclass(eq=False)
class Vma:
    start: int
    end: int
    prot: str  # r | rw | none
    shared: bool
    file: ShmemFile | None  # None: private anonymous memory (vma_is_anonymous)
    pgoff: int
    account: bool = False  # VM_ACCOUNT
    thp: str | None = None  # "hugepage" (VM_HUGEPAGE) | "nohugepage" (VM_NOHUGEPAGE) | None
    anon_vma: int | None = None
    chain_len: int = 0
    # vma->vm_file: which struct file (open of the inode `file`) the VMA maps through;
    # two opens of one inode map the same page cache but never merge.
    file_handle: int = 0

    @property
    def anonymous(self) -> bool:
        return self.file is None

    @property
    def npages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    def pgoff_at(self, va: int) -> int:
        return self.pgoff + ((va - self.start) >> PAGE_SHIFT)

    def va_of(self, pgoff: int) -> int:
        return self.start + ((pgoff - self.pgoff) << PAGE_SHIFT)

    def copy(self, **changes: object) -> Vma:
        return replace(self, **changes)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Vma({self.start:#x}-{self.end:#x} {self.prot} anon_vma={self.anon_vma})"


def same_flags(a: Vma, b: Vma) -> bool:
    """is_mergeable_vma: identical vm_flags (VM_SOFTDIRTY aside) and the same file."""
    return (
        a.prot == b.prot
        and a.shared == b.shared
        and a.account == b.account
        and a.thp == b.thp
        and a.file is b.file
        and a.file_handle == b.file_handle
    )


def anon_vma_mergeable(existing: Vma, incoming: int | None) -> bool:
    """is_mergeable_anon_vma(incoming, existing->anon_vma, existing).

    Equal anon_vmas merge; if one side has none, only when the existing VMA's chain is
    singular, so an unfaulted VMA (empty chain) never absorbs a faulted one and a forked
    child's VMA (chain of 2) never absorbs an unfaulted one.
    """
    if existing.anon_vma == incoming:
        return True
    return (existing.anon_vma is None or incoming is None) and existing.chain_len == 1


def can_merge_after(prev: Vma, incoming: Vma) -> bool:
    """can_vma_merge_after: `incoming` may extend the existing `prev`."""
    return (
        prev.end == incoming.start
        and same_flags(prev, incoming)
        and prev.pgoff + prev.npages == incoming.pgoff
        and anon_vma_mergeable(prev, incoming.anon_vma)
    )


def can_merge_before(nxt: Vma, incoming: Vma) -> bool:
    """can_vma_merge_before: `incoming` may be absorbed by the existing `nxt`."""
    return (
        incoming.end == nxt.start
        and same_flags(nxt, incoming)
        and incoming.pgoff + incoming.npages == nxt.pgoff
        and anon_vma_mergeable(nxt, incoming.anon_vma)
    )


def three_way_anon_ok(prev: Vma, nxt: Vma) -> bool:
    """vma_merge's is_mergeable_anon_vma(prev->anon_vma, next->anon_vma, NULL)."""
    return prev.anon_vma == nxt.anon_vma or prev.anon_vma is None or nxt.anon_vma is None


def anon_vma_compatible(a: Vma, b: Vma) -> bool:
    """mm/rmap.c anon_vma_compatible: a directly before b, same flags but for access bits."""
    return (
        a.end == b.start
        and a.file is b.file
        and a.file_handle == b.file_handle
        and a.shared == b.shared
        and a.account == b.account
        and a.thp == b.thp
        and b.pgoff == a.pgoff + a.npages
    )
