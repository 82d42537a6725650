"""The model's fault-around modes, deferred split, struct files and recall states.

Expectations worked out from 6.1's do_fault_around/filemap_map_pages, the series'
filemap_whole_folio_range (patch 0004), page_remove_rmap/deferred_split_huge_page and
drop_caches; the same scenarios run on real kernels in configs/workloads/.
"""

from __future__ import annotations

from pathlib import Path

from test_model import TMPFS, M, counts, folio_at, run

from harness.model import ProbePrediction

K = 1 << 10
SHMEM_2M_AT_1M = """
- file: {file: f, kind: tmpfs, path: /mnt/huge/f, size: 2M, populate: write}
- mmap: {map: m, file: f, length: 2M, at: 1M, shared: true}
- touch: {map: m, offset: 8K, length: 4K}
- probe: {label: p, map: m}
"""


def mapped_pages(probe: ProbePrediction) -> int:
    return sum(r.npages for r in probe.mapped)


def setup(**knobs: object) -> str:
    extra = "".join(f", {k}: {v}" for k, v in knobs.items())
    return "{" + TMPFS + extra + "}"


def test_fault_around_window_follows_fault_around_bytes(tmp_path: Path) -> None:
    pages = {
        fab: mapped_pages(run(tmp_path, SHMEM_2M_AT_1M, setup(fault_around_bytes=fab)).probes["p"])
        for fab in ("4K", "64K", "96K", "2M")
    }
    # 4K: fault-around off, one page; 64K: 16 pages; 96K rounds down to 64K; 2M: the
    # whole window is clipped by the page table the fault is in (VA 1M..2M: 256 pages).
    assert pages == {"4K": 1, "64K": 16, "96K": 16, "2M": 256}


def test_whole_folio_maps_the_folio_inside_vma_and_table(tmp_path: Path) -> None:
    on = setup(fault_around_whole_folio="true")
    probe = run(tmp_path, SHMEM_2M_AT_1M, on).probes["p"]
    assert mapped_pages(probe) == 256  # pages 0..255, all in the first page table
    assert counts(folio_at(probe, 1 * M)) == (256, 0, 1, 1)
    # fault-around off: no ->map_pages, whole-folio mode has nothing to widen.
    off = setup(fault_around_whole_folio="true", fault_around_bytes="4K")
    assert mapped_pages(run(tmp_path, SHMEM_2M_AT_1M, off).probes["p"]) == 1


def test_whole_folio_stops_at_the_vma_end_and_at_eof(tmp_path: Path) -> None:
    on = setup(fault_around_whole_folio="true")
    vma_end = """
- file: {file: f, kind: tmpfs, path: /mnt/huge/f, size: 2M, populate: write}
- mmap: {map: m, file: f, length: 1M, at: 0, shared: true}
- touch: {map: m, offset: 512K, length: 4K}
- probe: {label: p, map: m}
"""
    assert mapped_pages(run(tmp_path, vma_end, on).probes["p"]) == 256
    eof = """
- file: {file: f, kind: tmpfs, path: /mnt/huge/f, size: 1536K, populate: write}
- mmap: {map: m, file: f, length: 1536K, at: 0, shared: true}
- touch: {map: m, offset: 1200K, length: 4K}
- probe: {label: p, map: m}
"""
    assert mapped_pages(run(tmp_path, eof, on).probes["p"]) == 384
    assert mapped_pages(run(tmp_path, eof, setup()).probes["p"]) == 16


DEFERRED = """
- mmap: {map: a, length: 2M, at: 0}
- madvise: {map: a, advice: hugepage}
- touch: {map: a, write: true}
- probe: {label: thp, map: a, length: 4K}
- fork: {child: c}
- munmap: {map: a, offset: 1M, length: 1M}
"""


def test_deferred_split_only_when_a_page_is_mapped_nowhere(tmp_path: Path) -> None:
    only_parent = run(tmp_path, DEFERRED + "- drop_caches:\n- probe: {label: p, map: a}")
    assert folio_at(only_parent.probes["p"], 0).order == 9
    assert only_parent.events == {}
    both = run(
        tmp_path,
        DEFERRED
        + "- munmap: {proc: c, map: a, offset: 1M, length: 1M}\n"
        + "- probe: {label: before, map: a}\n- drop_caches:\n- probe: {label: p, map: a}\n"
        + "- recall: {label: head, probe: thp}",
    )
    assert folio_at(both.probes["before"], 0).order == 9  # queued, not split yet
    assert folio_at(both.probes["p"], 0).order == 0
    assert both.events == {"thp_deferred_split_page": 1, "thp_split_page": 1}
    assert both.recalls == {"head": "split"}


def test_a_sharer_exiting_queues_nothing(tmp_path: Path) -> None:
    steps = DEFERRED.replace("- munmap: {map: a, offset: 1M, length: 1M}\n", "") + (
        "- mprotect: {map: a, offset: 1M, length: 4K, prot: r}\n"
        "- exit: {proc: c}\n- drop_caches:\n- probe: {label: p, map: a}"
    )
    result = run(tmp_path, steps)
    assert folio_at(result.probes["p"], 0).order == 9
    assert "thp_deferred_split_page" not in result.events


def test_two_opens_keep_vmas_apart(tmp_path: Path) -> None:
    steps = """
- file: {file: f, kind: tmpfs, path: /mnt/huge/f, size: 2M, populate: write}
- open: {file: g, of: f}
- mmap: {map: lo, file: f, length: 1M, at: 0, shared: true}
- mmap: {map: hi, file: WHICH, length: 1M, at: 1M, file_offset: 1M, shared: true}
- touch: {map: lo}
- probe: {label: p, map: lo}
"""
    apart = run(tmp_path, steps.replace("WHICH", "g"), "{" + TMPFS + "}").probes["p"]
    merged = run(tmp_path, steps.replace("WHICH", "f"), "{" + TMPFS + "}").probes["p"]
    assert [(v.start, v.end) for v in apart.vmas] != [(v.start, v.end) for v in merged.vmas]
    assert len(apart.vmas) == 1 and apart.vmas[0].end - apart.vmas[0].start == M
    assert counts(folio_at(merged, 0))[1:3] == (1, 1)  # one VMA of 2 MiB: PMD-mapped
    assert folio_at(apart, 0).E == 0  # neither VMA fits a PMD: PTEs


def test_recall_states(tmp_path: Path) -> None:
    freed = run(tmp_path, DEFERRED.split("- fork")[0] + "- munmap: {map: a}\n"
                "- recall: {label: r, probe: thp}")  # fmt: skip
    assert freed.recalls == {"r": "freed"}
    cached = run(
        tmp_path,
        """
- file: {file: f, kind: tmpfs, path: /mnt/huge/f, size: 2M, populate: write}
- mmap: {map: m, file: f, length: 2M, at: 0, shared: true}
- touch: {map: m}
- probe: {label: seen, map: m, length: 4K}
- munmap: {map: m}
- recall: {label: r, probe: seen}
- punch: {file: f, offset: 1M, length: 4K}
- recall: {label: after-punch, probe: seen}
""",
        "{" + TMPFS + "}",
    )
    assert cached.recalls == {"r": "cached", "after-punch": "split"}
    nothing = run(tmp_path, "- mmap: {map: a, length: 8K, at: 0}\n- probe: {label: p, map: a}\n"
                  "- recall: {label: r, probe: p}")  # fmt: skip
    assert nothing.errors == {3: "ENOENT"} and nothing.recalls == {}


def test_drop_caches_keeps_fault_around_off_a_deactivated_thp(tmp_path: Path) -> None:
    steps = """
- file: {file: f, kind: tmpfs, path: /mnt/huge/f, size: 4M, populate: write}
- mmap: {map: m, file: f, length: 4M, at: 25512K, shared: true}
DROP
- touch: {map: m, offset: 2M, length: 4K}
- probe: {label: p, map: m}
"""
    knobs = setup(fault_around_bytes="2M")
    # The window reaches back into the previous THP: 234 of its pages and 278 of this one.
    assert mapped_pages(run(tmp_path, steps.replace("DROP", ""), knobs).probes["p"]) == 512
    # Deactivated by drop_caches (PG_reclaim = PG_readahead): only ->fault's page.
    dropped = run(tmp_path, steps.replace("DROP", "- drop_caches:"), knobs).probes["p"]
    assert mapped_pages(dropped) == 1


def test_drop_caches_keeps_fault_around_off_deactivated_small_folios(tmp_path: Path) -> None:
    """Small folios too (mmwork drains the one CPU's LRU batches around drop_caches), but
    only those nothing maps: a page still mapped elsewhere is not deactivated."""
    steps = """
- file: {file: f, kind: memfd, size: 512K, populate: write}
- mmap: {map: keep, file: f, length: 4K, file_offset: 128K, at: 8M, shared: true}
- touch: {map: keep, length: 4K}
- mmap: {map: m, file: f, length: 512K, at: 40M, shared: true}
DROP
- touch: {map: m, offset: 424K, length: 4K}
- probe: {label: p, map: m}
"""
    knobs = "{shmem_enabled: never, fault_around_bytes: 2M}"
    assert mapped_pages(run(tmp_path, steps.replace("DROP", ""), knobs).probes["p"]) == 128
    dropped = run(tmp_path, steps.replace("DROP", "- drop_caches:"), knobs).probes["p"]
    # ->fault's page, and the page `keep` maps (mapped, so never given PG_reclaim).
    assert mapped_pages(dropped) == 2
