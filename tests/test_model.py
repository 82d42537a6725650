"""The reference model against 6.1 semantics, scenario by scenario.

Each expectation was worked out from the 6.1 source (functions named in the model's
docstrings); the design study's worked example (section 4) is reproduced row by row.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness import model, workload
from harness.model import FolioPrediction, ModelResult, ProbePrediction
from harness.workload import ARENA

K = 1 << 10
M = 1 << 20
REPO = Path(__file__).resolve().parent.parent
TMPFS = "mounts: [{path: /mnt/huge, size: 64M, huge: always}]"


def run(tmp_path: Path, steps: str, setup: str = "{}") -> ModelResult:
    text = "scenarios:\n  - name: t\n    setup: " + setup + "\n    steps:\n"
    text += textwrap.indent(textwrap.dedent(steps).strip() + "\n", "      ")
    path = tmp_path / "t.yaml"
    path.write_text(text)
    (scenario,) = workload.load_workload(path)
    return model.predict(scenario)


def folio_at(probe: ProbePrediction, offset: int) -> FolioPrediction:
    """The folio mapped at ARENA + offset in a probe."""
    va = ARENA + offset
    for run_ in probe.mapped:
        if run_.va <= va < run_.va + run_.npages * 4 * K:
            return next(f for f in probe.folios if f.folio == run_.folio)
    raise AssertionError(f"nothing mapped at {va:#x}")


def counts(folio: FolioPrediction) -> tuple[int, int, int, int]:
    return folio.T, folio.E, folio.W, folio.V


THP = """
- mmap: {map: a, length: 2M, at: 0}
- madvise: {map: a, advice: hugepage}
- touch: {map: a, write: true}
"""


# --- the worked example of the design study, section 4 -----------------------------------


def test_worked_example(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- probe: {label: pmd, map: a}
- madvise: {map: a, offset: 4K, length: 4K, advice: nohugepage}
- madvise: {map: a, offset: 4K, length: 4K, advice: hugepage}
- probe: {label: split, map: a}
- mprotect: {map: a, offset: 1M, length: 4K, prot: r}
- probe: {label: mprotect, map: a}
- mprotect: {map: a, offset: 1M, length: 4K, prot: rw}
- probe: {label: restored, map: a}
- mremap: {map: a, to: 9M}
- probe: {label: mremap, map: a}
- fork: {child: c}
- probe: {label: fork, map: a}
- touch: {proc: c, map: a, length: 4K, write: true}
- probe: {label: cow, map: a}
- munmap: {proc: c, map: a}
- probe: {label: zapped, map: a}
""",
    )
    p = result.probes
    assert counts(folio_at(p["pmd"], 0)) == (1, 1, 1, 1)
    assert folio_at(p["pmd"], 0).P_runs == ((0, 512, 1),)
    # The PMD split through a VMA split that merged back: PTEs in place, W unchanged.
    assert counts(folio_at(p["split"], 0)) == (512, 0, 1, 1)
    assert counts(folio_at(p["mprotect"], 0)) == (512, 0, 3, 3)
    assert counts(folio_at(p["restored"], 0)) == (512, 0, 1, 1)
    assert counts(folio_at(p["mremap"], 9 * M)) == (512, 0, 2, 1)
    assert counts(folio_at(p["fork"], 9 * M)) == (1024, 0, 4, 2)
    assert folio_at(p["fork"], 9 * M).P_runs == ((0, 512, 2),)
    assert counts(folio_at(p["cow"], 9 * M)) == (1023, 0, 4, 2)
    assert folio_at(p["cow"], 9 * M).P_runs == ((0, 1, 1), (1, 511, 2))
    assert counts(folio_at(p["zapped"], 9 * M)) == (512, 0, 2, 1)
    assert result.errors == {}


def test_half_mremapped_elsewhere_raises_w_without_a_new_mapping(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- mremap: {map: a, offset: 1M, length: 1M, to: 8M, as: b}
- probe: {label: a, map: a}
- probe: {label: b, map: b}
""",
    )
    a, b = folio_at(result.probes["a"], 0), folio_at(result.probes["b"], 8 * M)
    assert a.folio == b.folio and a.order == 9
    assert counts(a) == (512, 0, 2, 2)
    assert a.P_runs == ((0, 256, 1),) and b.P_runs == ((256, 256, 1),)


# --- anonymous THPs ----------------------------------------------------------------------


def test_order0_baseline(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- mmap: {map: a, length: 64K, at: 0}
- touch: {map: a, write: true}
- probe: {label: p, map: a}
""",
        setup="{thp_enabled: never}",
    )
    probe = result.probes["p"]
    assert len(probe.folios) == 16
    assert all(f.order == 0 and counts(f) == (1, 0, 1, 1) for f in probe.folios)
    assert probe.not_present == ()


def test_thp_needs_madvise_when_enabled_is_madvise(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- mmap: {map: a, length: 2M, at: 0}
- touch: {map: a, length: 4K, write: true}
- probe: {label: p, map: a, length: 8K}
""",
    )
    probe = result.probes["p"]
    assert folio_at(probe, 0).order == 0
    # do_anonymous_page never maps more than the faulting page.
    assert probe.not_present == ((ARENA + 4 * K, 1),)


def test_misaligned_anon_map_gets_no_thp(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- mmap: {map: a, length: 2M, at: 1M}
- touch: {map: a, write: true}
- probe: {label: p, map: a}
""",
        setup="{thp_enabled: always}",
    )
    assert {f.order for f in result.probes["p"].folios} == {0}


def test_read_fault_maps_huge_zero_page_then_write_cows_order0(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- mmap: {map: a, length: 2M, at: 0}
- madvise: {map: a, advice: hugepage}
- touch: {map: a}
- probe: {label: zero, map: a}
- touch: {map: a, length: 4K, write: true}
- probe: {label: written, map: a, length: 8K}
""",
    )
    zero = folio_at(result.probes["zero"], 0)
    assert (zero.kind, zero.order, zero.P_runs) == ("zero", 9, ((0, 512, 0),))
    assert result.probes["zero"].vmas[0].rss_kb == 0
    written = result.probes["written"]
    assert folio_at(written, 0).kind == "anon" and folio_at(written, 0).order == 0
    assert folio_at(written, 4 * K).kind == "zero" and folio_at(written, 4 * K).order == 0


def test_munmap_second_half_keeps_folio_large(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP + "- munmap: {map: a, offset: 1M, length: 1M}\n- probe: {label: p, map: a}\n",
    )
    folio = folio_at(result.probes["p"], 0)
    assert folio.order == 9 and counts(folio) == (256, 0, 1, 1)


def test_map_three_unmap_two_anon(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP + "- munmap: {map: a, offset: 4K, length: 8K}\n- probe: {label: p, map: a}\n",
    )
    probe = result.probes["p"]
    folio = folio_at(probe, 0)
    assert counts(folio) == (510, 0, 2, 2)
    assert probe.not_present == ((ARENA + 4 * K, 2),)
    assert len(probe.vmas) == 2


def test_fork_shares_pmd(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- fork: {child: c}
- probe: {label: parent, map: a}
- probe: {label: child, proc: c, map: a}
""",
    )
    for label in ("parent", "child"):
        folio = folio_at(result.probes[label], 0)
        assert counts(folio) == (2, 2, 2, 2) and folio.P_runs == ((0, 512, 2),)
    assert folio_at(result.probes["parent"], 0).folio == folio_at(result.probes["child"], 0).folio


def test_cow_from_parent_after_fork_splits_parent_pmd(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- fork: {child: c}
- touch: {map: a, offset: 8K, length: 4K, write: true}
- probe: {label: parent, map: a}
- probe: {label: child, proc: c, map: a}
""",
    )
    parent, child = result.probes["parent"], result.probes["child"]
    thp = folio_at(child, 0)
    # Child PMD (E=1) + 511 parent PTEs; do_huge_pmd_wp_page split only the parent's PMD.
    assert counts(thp) == (512, 1, 2, 2)
    assert thp.P_runs == ((0, 2, 2), (2, 1, 1), (3, 509, 2))
    copy = folio_at(parent, 8 * K)
    assert copy.order == 0 and copy.kind == "anon" and counts(copy) == (1, 0, 1, 1)
    assert parent.vmas[0].anon_huge_kb == 0 and child.vmas[0].anon_huge_kb == 2048


def test_cow_from_child_after_fork(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- fork: {child: c}
- touch: {proc: c, map: a, length: 4K, write: true}
- probe: {label: parent, map: a}
""",
    )
    folio = folio_at(result.probes["parent"], 0)
    assert counts(folio) == (512, 1, 2, 2)
    assert folio.P_runs == ((0, 1, 1), (1, 511, 2))


def test_write_after_child_exit_reuses_the_pmd(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- fork: {child: c}
- exit: {proc: c}
- touch: {map: a, length: 4K, write: true}
- probe: {label: p, map: a}
""",
    )
    folio = folio_at(result.probes["p"], 0)
    assert folio.order == 9 and counts(folio) == (1, 1, 1, 1)


def test_pte_mapped_thp_after_child_exit_still_cows(tmp_path: Path) -> None:
    # After fork no subpage is AnonExclusive; a PTE-mapped THP's refcount is its 511
    # mappings, so do_wp_page copies even with the child gone (6.1 behaviour).
    result = run(
        tmp_path,
        THP
        + """
- madvise: {map: a, length: 4K, advice: dontneed}
- fork: {child: c}
- exit: {proc: c}
- touch: {map: a, offset: 1M, length: 4K, write: true}
- probe: {label: p, map: a, offset: 1M, length: 8K}
""",
    )
    probe = result.probes["p"]
    assert folio_at(probe, 1 * M).order == 0
    assert counts(folio_at(probe, 1 * M + 4 * K)) == (510, 0, 1, 1)


def test_fork_of_pte_mapped_thp(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- madvise: {map: a, length: 4K, advice: dontneed}
- fork: {child: c}
- probe: {label: p, proc: c, map: a}
""",
    )
    folio = folio_at(result.probes["p"], 4 * K)
    assert counts(folio) == (1022, 0, 2, 2) and folio.P_runs == ((1, 511, 2),)


def test_mremap_whole_thp_aligned_moves_the_pmd(tmp_path: Path) -> None:
    result = run(tmp_path, THP + "- mremap: {map: a, to: 8M}\n- probe: {label: p, map: a}\n")
    folio = folio_at(result.probes["p"], 8 * M)
    assert counts(folio) == (1, 1, 1, 1)


def test_mremap_fails_across_vmas(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- mprotect: {map: a, offset: 4K, length: 4K, prot: r}
- mremap: {map: a, to: 8M}
- probe: {label: p, map: a}
""",
    )
    assert result.errors == {5: "EFAULT"}
    assert result.probes["p"].folios == ()


def test_dontneed_and_cold_on_part_of_a_thp(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- madvise: {map: a, offset: 1M, length: 1M, advice: dontneed}
- probe: {label: dontneed, map: a}
- madvise: {map: a, length: 64K, advice: cold}
- probe: {label: cold, map: a}
""",
    )
    assert counts(folio_at(result.probes["dontneed"], 0)) == (256, 0, 1, 1)
    cold = result.probes["cold"]
    assert len(cold.folios) == 256 and {f.order for f in cold.folios} == {0}


def test_cold_leaves_a_shared_thp_alone(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- fork: {child: c}
- madvise: {map: a, length: 64K, advice: cold}
- probe: {label: p, map: a}
""",
    )
    assert counts(folio_at(result.probes["p"], 0)) == (2, 2, 2, 2)


def test_debugfs_split_of_shared_thp_keeps_every_mapping(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- fork: {child: c}
- split: {map: a}
- probe: {label: p, proc: c, map: a}
""",
    )
    probe = result.probes["p"]
    assert len(probe.folios) == 512
    assert all(f.order == 0 and counts(f) == (2, 0, 2, 2) for f in probe.folios)


def test_deferred_split_after_fork(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        THP
        + """
- fork: {child: c}
- munmap: {proc: c, map: a, offset: 1M, length: 1M}
- probe: {label: p, map: a}
""",
    )
    folio = folio_at(result.probes["p"], 0)
    assert folio.order == 9 and counts(folio) == (257, 1, 2, 2)
    assert folio.P_runs == ((0, 256, 2), (256, 256, 1))


def test_forked_vma_does_not_absorb_a_new_mapping(tmp_path: Path) -> None:
    # is_mergeable_anon_vma: when one side has no anon_vma, the existing VMA's
    # anon_vma_chain must be singular. A forked child's chain has two entries, so a new
    # adjacent mmap merges in the parent but not in the child.
    result = run(
        tmp_path,
        """
- mmap: {map: b, length: 64K, at: 64K}
- touch: {map: b, write: true}
- fork: {child: c}
- mmap: {map: a, length: 64K, at: 0}
- mmap: {proc: c, map: a, length: 64K, at: 0}
- probe: {label: parent, map: a}
- probe: {label: child, proc: c, map: a}
""",
    )
    spans = {
        label: [(v.start - ARENA, v.end - ARENA) for v in result.probes[label].vmas]
        for label in ("parent", "child")
    }
    assert spans == {"parent": [(0, 128 * K)], "child": [(0, 64 * K)]}


# --- shmem -------------------------------------------------------------------------------

SHMEM_FILE = "- file: {file: f, kind: tmpfs, path: /mnt/huge/f, size: 2M, populate: write}\n"


def test_shmem_aligned_pmd(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        SHMEM_FILE
        + """
- mmap: {map: m, length: 2M, at: 0, file: f, shared: true}
- touch: {map: m}
- probe: {label: p, map: m}
""",
        setup="{" + TMPFS + "}",
    )
    probe = result.probes["p"]
    folio = folio_at(probe, 0)
    assert (folio.kind, folio.order) == ("shmem", 9) and counts(folio) == (1, 1, 1, 1)
    assert folio.P_runs == ((0, 512, 1),)
    assert probe.vmas[0].shmem_pmd_kb == 2048


def test_shmem_same_file_mapped_twice_and_misaligned(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        SHMEM_FILE
        + """
- mmap: {map: one, length: 2M, at: 0, file: f, shared: true}
- mmap: {map: two, length: 2M, at: 4M, file: f, shared: true}
- mmap: {map: odd, length: 2M, at: 9M, file: f, shared: true}
- touch: {map: one}
- touch: {map: two}
- probe: {label: twice, map: one}
- touch: {map: odd}
- probe: {label: odd, map: odd}
""",
        setup="{" + TMPFS + "}",
    )
    twice = folio_at(result.probes["twice"], 0)
    assert counts(twice) == (2, 2, 2, 2) and twice.P_runs == ((0, 512, 2),)
    odd = folio_at(result.probes["odd"], 9 * M)
    # Misaligned MAP_FIXED: 512 PTEs straddling two tables of one VMA (W += 2, V += 1).
    assert counts(odd) == (514, 2, 4, 3) and odd.P_runs == ((0, 512, 3),)


def test_shmem_misaligned_mapping_straddles_two_tables(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        SHMEM_FILE
        + """
- mmap: {map: m, length: 2M, at: 1M, file: f, shared: true}
- touch: {map: m, length: 4K}
- probe: {label: around, map: m}
- touch: {map: m}
- probe: {label: all, map: m}
""",
        setup="{" + TMPFS + "}",
    )
    around = result.probes["around"]
    # Fault-around: the 64K window, clipped to the VMA and the page table.
    assert folio_at(around, 1 * M).pages_in_range == 16
    assert around.not_present == ((ARENA + 1 * M + 64 * K, 512 - 16),)
    assert counts(folio_at(result.probes["all"], 1 * M)) == (512, 0, 2, 1)


def test_shmem_private_write_zaps_pmd_and_cows(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        SHMEM_FILE
        + """
- mmap: {map: m, length: 2M, at: 0, file: f}
- touch: {map: m}
- touch: {map: m, offset: 4K, length: 4K, write: true}
- probe: {label: cow, map: m, length: 8K}
- touch: {map: m}
- probe: {label: refault, map: m}
""",
        setup="{" + TMPFS + "}",
    )
    cow = result.probes["cow"]
    assert cow.not_present == ((ARENA, 1),)
    assert folio_at(cow, 4 * K).kind == "anon" and folio_at(cow, 4 * K).order == 0
    file_folio = folio_at(result.probes["refault"], 0)
    assert (file_folio.kind, file_folio.order) == ("shmem", 9)
    assert counts(file_folio) == (511, 0, 1, 1)


def test_shmem_map_three_unmap_two(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        SHMEM_FILE
        + """
- mmap: {map: m, length: 12K, at: 0, file: f, shared: true}
- touch: {map: m}
- probe: {label: three, map: m}
- munmap: {map: m, offset: 4K, length: 8K}
- probe: {label: one, map: m, length: 4K}
""",
        setup="{" + TMPFS + "}",
    )
    assert counts(folio_at(result.probes["three"], 0)) == (3, 0, 1, 1)
    assert counts(folio_at(result.probes["one"], 0)) == (1, 0, 1, 1)


def test_shmem_two_processes_and_fork_refault(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- file: {file: f, kind: memfd, size: 2M, populate: write}
- spawn: {proc: b}
- mmap: {map: m, length: 2M, at: 0, file: f, shared: true}
- mmap: {proc: b, map: m, length: 2M, at: 0, file: f, shared: true}
- touch: {map: m}
- touch: {proc: b, map: m}
- probe: {label: two, proc: b, map: m}
- fork: {proc: b, child: c}
- probe: {label: child, proc: c, map: m}
""",
        setup="{shmem_enabled: always}",
    )
    assert counts(folio_at(result.probes["two"], 0)) == (2, 2, 2, 2)
    # fork copies no page tables of a VMA without anon_vma: the child refaults later.
    assert result.probes["child"].folios == ()


def test_shmem_huge_setting_rules(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- file: {file: f, kind: memfd, size: 4M}
- mmap: {map: m, length: 4M, at: 0, file: f, shared: true}
- madvise: {map: m, length: 2M, advice: hugepage}
- touch: {map: m, write: true}
- probe: {label: p, map: m}
""",
        setup="{shmem_enabled: advise}",
    )
    probe = result.probes["p"]
    assert folio_at(probe, 0).order == 9 and counts(folio_at(probe, 0)) == (1, 1, 1, 1)
    assert folio_at(probe, 2 * M).order == 0


def test_shmem_deny_and_never(tmp_path: Path) -> None:
    steps = SHMEM_FILE + "- mmap: {map: m, length: 2M, at: 0, file: f, shared: true}\n"
    steps += "- touch: {map: m}\n- probe: {label: p, map: m}\n"
    deny = run(tmp_path, steps, setup="{shmem_enabled: deny, " + TMPFS + "}")
    assert {f.order for f in deny.probes["p"].folios} == {0}
    never = run(tmp_path, steps, setup="{mounts: [{path: /mnt/huge, size: 8M}]}")
    assert {f.order for f in never.probes["p"].folios} == {0}


def test_shmem_punch_hole_splits_and_unmaps(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        SHMEM_FILE
        + """
- mmap: {map: m, length: 2M, at: 0, file: f, shared: true}
- touch: {map: m}
- punch: {file: f, offset: 64K, length: 4K}
- probe: {label: gone, map: m, length: 128K}
- touch: {map: m, length: 128K}
- probe: {label: back, map: m, length: 128K}
""",
        setup="{" + TMPFS + "}",
    )
    assert result.probes["gone"].folios == ()
    back = result.probes["back"]
    assert len(back.folios) == 32 and {f.order for f in back.folios} == {0}
    ids = [folio_at(back, k * 4 * K).folio for k in range(32)]
    assert ids[16] > max(ids[:16] + ids[17:])  # the punched page is a new folio


def test_shmem_debugfs_split_unmaps(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        SHMEM_FILE
        + """
- mmap: {map: m, length: 2M, at: 0, file: f, shared: true}
- touch: {map: m}
- split: {map: m}
- probe: {label: gone, map: m}
- touch: {map: m, length: 64K}
- probe: {label: back, map: m, length: 64K}
""",
        setup="{" + TMPFS + "}",
    )
    assert result.probes["gone"].folios == ()
    assert [counts(f) for f in result.probes["back"].folios] == [(1, 0, 1, 1)] * 16


def test_fallocated_folios_are_skipped_by_fault_around(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- file: {file: f, kind: tmpfs, path: /mnt/huge/f, size: 2M, populate: fallocate}
- mmap: {map: m, length: 2M, at: 1M, file: f, shared: true}
- touch: {map: m, length: 4K}
- probe: {label: p, map: m, length: 64K}
""",
        setup="{" + TMPFS + "}",
    )
    # The fault clears the !uptodate folio and maps just its page (no PMD: misaligned).
    assert folio_at(result.probes["p"], 1 * M).pages_in_range == 1


def test_drop_caches_keeps_dirty_and_mapped_shmem(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- file: {file: f, kind: memfd, size: 64K}
- mmap: {map: m, length: 64K, at: 0, file: f, shared: true}
- touch: {map: m}
- probe: {label: before, map: m}
- munmap: {map: m}
- drop_caches:
- mmap: {map: n, length: 64K, at: 0, file: f, shared: true}
- touch: {map: n}
- probe: {label: after, map: n}
""",
    )
    before = {f.folio for f in result.probes["before"].folios}
    after = {f.folio for f in result.probes["after"].folios}
    assert before and not before & after  # clean read-faulted pages were dropped


def test_drop_caches_keeps_written_shmem(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
- file: {file: f, kind: memfd, size: 64K, populate: write}
- mmap: {map: m, length: 64K, at: 0, file: f, shared: true}
- touch: {map: m}
- probe: {label: before, map: m}
- munmap: {map: m}
- drop_caches:
- mmap: {map: n, length: 64K, at: 0, file: f, shared: true}
- touch: {map: n}
- probe: {label: after, map: n}
""",
    )
    before = [f.folio for f in result.probes["before"].folios]
    assert before == [f.folio for f in result.probes["after"].folios]


# --- output ------------------------------------------------------------------------------


def test_json_and_table_output(tmp_path: Path) -> None:
    result = run(tmp_path, THP + "- probe: {label: p, map: a}\n")
    data = json.loads(model.to_json(result))
    assert data["probes"][0]["folios"][0]["T"] == 1
    assert json.dumps(result.to_json())
    table = model.format_table(result)
    assert "probe p" in table and "0:512=1" in table


def test_thp_basic_workload_predicts_without_errors() -> None:
    scenarios = workload.load_workload(REPO / "configs" / "workloads" / "thp-basic.yaml")
    assert len(scenarios) >= 20
    for scenario in scenarios:
        result = model.predict(scenario)
        assert result.errors == {}, (scenario.name, result.errors)
        assert len(result.probes) == len(scenario.probes())


@pytest.mark.parametrize("offset", [0, 4 * K, 1 * M])
def test_probe_page_runs_cover_the_range(tmp_path: Path, offset: int) -> None:
    result = run(tmp_path, THP + f"- probe: {{label: p, map: a, offset: {offset}}}\n")
    probe = result.probes["p"]
    mapped = sum(r.npages for r in probe.mapped) + sum(n for _, n in probe.not_present)
    assert mapped == probe.npages == (2 * M - offset) // (4 * K)
    assert probe.mapped[0].page == offset // (4 * K)
