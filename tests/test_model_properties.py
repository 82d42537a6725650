"""Random operation sequences never crash the model, and the mapcount invariants hold.

Invariants (linear mappings): E <= W <= T, max P <= W <= T, V <= W, and W == 0 exactly
when the folio is unmapped; plus the model's own bookkeeping (runs sorted and inside
VMAs, reverse maps agreeing with the page tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model.counts import folio_counts, p_runs
from harness.model.folio import ZERO
from harness.model.kernel import Kernel
from harness.model.layout import PMD_SHIFT
from harness.schema import Where
from harness.workload import ARENA, Mount, Setup

K = 1 << 10
M = 1 << 20
SPAN = 16 * M
PROTS = ("rw", "rw", "r", "none")
ADVICE = ("hugepage", "nohugepage", "dontneed", "cold", "pageout")

offsets = st.one_of(
    st.integers(0, SPAN // M - 1).map(lambda i: i * M),
    st.integers(0, SPAN // (4 * K) - 1).map(lambda p: p * 4 * K),
)
lengths = st.one_of(
    st.sampled_from([4 * K, 8 * K, 12 * K, 64 * K, 1 * M, 2 * M, 4 * M]),
    st.integers(1, 1024).map(lambda p: p * 4 * K),
)


@dataclass(frozen=True)
class Op:
    name: str
    proc: int
    at: int
    length: int
    other: int  # destination, file offset, ... depending on the op
    choice: int  # file, prot, advice, ... depending on the op
    flag: bool


ops = st.builds(
    Op,
    name=st.sampled_from(
        [
            "mmap",
            "mmap",
            "munmap",
            "mremap",
            "mremap",
            "mprotect",
            "madvise",
            "madvise",
            "touch",
            "touch",
            "touch",
            "touch",
            "punch",
            "split",
            "drop_caches",
            "fork",
            "fork",
            "exit",
            "spawn",
        ]
    ),
    proc=st.integers(0, 3),
    at=offsets,
    length=lengths,
    other=offsets,
    choice=st.integers(0, 11),
    flag=st.booleans(),
)
setups = st.builds(
    lambda enabled, shmem, huge: Setup(
        thp_enabled=enabled,
        shmem_enabled=shmem,
        mounts=(Mount("/mnt/h", 64 * M, huge, Where(Path("<test>"), 0)),),
    ),
    st.sampled_from(["always", "madvise", "never"]),
    st.sampled_from(["never", "always", "advise", "force", "deny", "within_size"]),
    st.sampled_from(["always", "never", "within_size", "advise"]),
)


def apply(kernel: Kernel, op: Op, serial: int) -> None:
    procs = sorted(kernel.mms)
    if not procs:
        kernel.spawn(f"p{serial}")
        return
    proc = procs[op.proc % len(procs)]
    lo = ARENA + op.at
    vmas = kernel.mms[proc].vmas
    if op.name != "mmap" and vmas and op.choice % 4:
        # Mostly aim at an existing mapping, so that operations meet each other.
        vma = vmas[op.other % len(vmas)]
        lo = vma.start + (op.at % (vma.end - vma.start))
    hi = min(lo + op.length, ARENA + SPAN)
    files = sorted(kernel.files)
    match op.name:
        case "mmap":
            file = None if op.choice % 3 == 0 else files[op.choice % len(files)]
            offset = 0
            if file is not None:
                size = kernel.files[file].size_pages * 4 * K
                offset = min(op.other % size, size - 4 * K) // (4 * K) * (4 * K)
                hi = min(hi, lo + size - offset)
            prot = PROTS[op.choice // 3 % len(PROTS)]
            kernel.mmap(proc, lo, hi - lo, file, offset, op.flag, prot)
        case "munmap":
            kernel.munmap(proc, lo, hi)
        case "mremap":
            new = ARENA + op.other
            if new + (hi - lo) <= ARENA + SPAN:
                kernel.mremap(proc, lo, hi - lo, new)
        case "mprotect":
            kernel.mprotect(proc, lo, hi, PROTS[op.choice % len(PROTS)])
        case "madvise":
            kernel.madvise(proc, lo, hi, ADVICE[op.choice % len(ADVICE)])
        case "touch":
            kernel.touch(proc, lo, hi, op.flag)
        case "punch":
            file = kernel.files[files[op.choice % len(files)]]
            size = file.size_pages * 4 * K
            offset = op.at % size
            kernel.punch(files[op.choice % len(files)], offset, min(op.length, size - offset))
        case "split":
            kernel.split(proc, lo, hi)
        case "drop_caches":
            kernel.drop_caches()
        case "fork":
            if len(kernel.mms) < 4:
                kernel.fork(proc, f"p{serial}")
        case "exit":
            if proc != "main" or op.flag:
                kernel.exit(proc)
        case "spawn":
            if len(kernel.mms) < 4:
                kernel.spawn(f"p{serial}")


def check_invariants(kernel: Kernel) -> None:
    runs_per_folio: dict[int, int] = {}
    for mm in kernel.mms.values():
        for idx, table in mm.tables.items():
            assert table.idx == idx and table.mm is mm
            block_lo, block_hi = idx << PMD_SHIFT, (idx + 1) << PMD_SHIFT
            if table.pmd is not None:
                assert not table.runs
                vma = mm.find_vma(block_lo)
                assert vma is not None and vma.start <= block_lo and block_hi <= vma.end
                if table.pmd.kind != ZERO:
                    assert table in table.pmd.pmd_maps
                    assert table.pmd.id in kernel.folios
                continue
            assert table.starts == [r.va for r in table.runs]
            previous_end = block_lo
            for run in table.runs:
                assert previous_end <= run.va < run.end <= block_hi, run
                assert mm.covered(run.va, run.end) == run.end, f"{run} outside VMAs"
                previous_end = run.end
                if run.folio.kind != ZERO:
                    assert run in run.folio.pte_runs
                    assert run.folio.id in kernel.folios
                    assert run.pidx + run.npages <= run.folio.nr_pages
                    runs_per_folio[run.folio.id] = runs_per_folio.get(run.folio.id, 0) + run.npages
    for folio in kernel.live_folios():
        assert folio.pte_pages == runs_per_folio.get(folio.id, 0), folio
        if folio.file is not None and folio.in_cache:
            assert folio.file.lookup(folio.index) is folio
        if not folio.mapped:
            assert folio.in_cache, f"{folio} leaked"
            assert not folio.pte_runs and not folio.pmd_maps  # so W == 0 as well
            continue
        c = folio_counts(folio)
        p_max = max(value for _, _, value in p_runs(folio, [(0, folio.nr_pages)]))
        assert c.E <= c.W <= c.T, (folio, c)
        assert p_max <= c.T and p_max <= c.W, (folio, c, p_max)
        assert c.V <= c.W, (folio, c)
        assert c.W > 0, (folio, c)  # mapped, so at least one (VMA, table) pair


def new_kernel(setup: Setup) -> Kernel:
    kernel = Kernel(setup)
    kernel.create_file("f", "tmpfs", "/mnt/h/f", 4 * M, "write")
    kernel.create_file("g", "memfd", None, 2 * M + 64 * K, "none")
    kernel.create_file("h", "tmpfs", "/mnt/h/h", 2 * M, "fallocate")
    return kernel


def populated_kernel(setup: Setup) -> Kernel:
    """Some THP-backed anon memory and a mapped shmem file to start from."""
    kernel = new_kernel(setup)
    kernel.mmap("main", ARENA, 4 * M, None, 0, False, "rw")
    kernel.madvise("main", ARENA, ARENA + 4 * M, "hugepage")
    kernel.touch("main", ARENA, ARENA + 2 * M + 64 * K, True)
    kernel.mmap("main", ARENA + 8 * M, 4 * M, "f", 0, True, "rw")
    kernel.touch("main", ARENA + 8 * M, ARENA + 10 * M + 64 * K, False)
    kernel.mmap("main", ARENA + 13 * M, 2 * M, "g", 0, False, "rw")
    kernel.touch("main", ARENA + 13 * M, ARENA + 13 * M + 256 * K, False)
    return kernel


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=setups, sequence=st.lists(ops, min_size=1, max_size=25))
def test_random_sequences_keep_invariants(setup: Setup, sequence: list[Op]) -> None:
    kernel = populated_kernel(setup)
    check_invariants(kernel)
    for serial, op in enumerate(sequence):
        apply(kernel, op, serial)
        if serial % 3 == 2 or serial == len(sequence) - 1:
            check_invariants(kernel)  # every few steps: a full check walks every folio


THP_HEAVY = st.builds(
    Op,
    name=st.sampled_from(["touch", "fork", "mprotect", "mremap", "madvise", "munmap", "split"]),
    proc=st.integers(0, 3),
    at=st.integers(0, 5).map(lambda i: i * M),
    length=st.sampled_from([4 * K, 1 * M, 2 * M, 3 * M]),
    other=st.integers(8, 15).map(lambda i: i * M),
    choice=st.integers(0, 5),
    flag=st.booleans(),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(THP_HEAVY, min_size=1, max_size=15))
def test_thp_heavy_sequences_keep_invariants(sequence: list[Op]) -> None:
    """Start from PMD-mapped anon THPs so splits, COW and moves are frequent."""
    kernel = new_kernel(Setup(thp_enabled="always"))
    kernel.mmap("main", ARENA, 6 * M, None, 0, False, "rw")
    kernel.touch("main", ARENA, ARENA + 6 * M, True)
    for serial, op in enumerate(sequence):
        apply(kernel, op, serial)
        if serial % 2 == 1 or serial == len(sequence) - 1:
            check_invariants(kernel)
