"""Series lines, mutation operators and coverage plumbing on a tiny real git tree (offline)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from harness import patches
from harness.campaign import coverage, mutants, mutate
from harness.campaign import lines as series_lines
from harness.source import BASE_TAG

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]

BASE_C = """\
#include <linux/mm.h>

static int existing(int a)
{
\treturn a;
}
"""

# Patch 1 adds a function with one of each thing the operators look for.
PATCH1_C = """\
#include <linux/mm.h>

static int existing(int a)
{
\treturn a;
}

/* folio_add(nr) in a comment must never be mutated: if (x < y) */
static void take_run(struct folio *folio, struct run *run, unsigned int nr)
{
\tunsigned int i;

\tif (!run->nr)
\t\treturn;
\tfolio_remove_range(folio, run->page, run->nr);
\tfor (i = 0; i < nr; i++)
\t\tatomic_inc(&folio->count);
\tstat_mod(folio, "a < b", -nr);
\trun->nr = 0;
}
"""

# Patch 2 adds a line above patch 1's function: its lines move down in the final tree.
PATCH2_C = PATCH1_C.replace(
    "static int existing(int a)\n{\n\treturn a;\n}\n",
    "static int existing(int a)\n{\n\tif (a > 3)\n\t\ta++;\n\treturn a;\n}\n",
)

MAKEFILE = "obj-y += memory.o\nobj-y += rmap.o\n"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def tree_and_series(tmp_path: Path) -> tuple[Path, patches.Series]:
    """A git tree tagged as the harness base, and a 2-patch series made by git format-patch."""
    tree = tmp_path / "linux"
    (tree / "mm").mkdir(parents=True)
    (tree / "mm" / "memory.c").write_text(BASE_C)
    (tree / "mm" / "Makefile").write_text(MAKEFILE)
    _git(tree, "init", "-q")
    _git(tree, "add", "-A")
    _git(tree, "commit", "-qm", "base")
    _git(tree, "tag", BASE_TAG)
    work = tmp_path / "work"
    _git(tmp_path, "clone", "-q", str(tree), str(work))
    for content, subject in ((PATCH1_C, "mm: take a run"), (PATCH2_C, "mm: bump")):
        (work / "mm" / "memory.c").write_text(content)
        _git(work, "commit", "-qam", subject)
    out = tmp_path / "patches"
    _git(work, "format-patch", "-q", "-2", "-o", str(out))
    names = sorted(p.name for p in out.glob("*.patch"))
    (out / "series").write_text("\n".join(names) + "\n")
    return tree, patches.read_series(out / "series")


def test_added_lines_are_mapped_to_the_final_tree(tree_and_series) -> None:
    tree, series = tree_and_series
    lines = series_lines.series_lines(tree, series)
    first, second = (p.path.name for p in series.patches)
    final = lines.final_text("mm/memory.c").splitlines()
    # Every added line is where the final tree has it, and owned by the patch that added it.
    for added in lines.added:
        assert final[added.line - 1] == added.text
    owners = {a.text: a.patch for a in lines.added}
    assert owners["\tfolio_remove_range(folio, run->page, run->nr);"] == first
    assert owners["\tif (a > 3)"] == second
    # Patch 1's lines sit two lines lower than in patch 1's own result.
    take = next(a for a in lines.added if a.text.startswith("static void take_run"))
    assert take.line == PATCH1_C.splitlines().index(take.text) + 1 + 2
    # The tree's own branch and work tree were not touched.
    assert (tree / "mm" / "memory.c").read_text() == BASE_C
    assert _git(tree, "status", "--porcelain") == ""


def test_each_operator_makes_the_expected_mutant(tree_and_series) -> None:
    tree, series = tree_and_series
    lines = series_lines.series_lines(tree, series)
    made = list(mutants.mutants_of(lines, [series.patches[0].path.name]))
    got = {(m.operator, " ".join(m.after.split())) for m in made}
    expected = {
        ("negate", "if (!(!run->nr))"),
        ("delete-call", ";"),
        ("nr-one", "folio_remove_range(folio, run->page, 1);"),
        ("nr-minus-one", "folio_remove_range(folio, run->page, (run->nr - 1));"),
        ("off-by-one", "for (i = 0; i <= nr; i++)"),
        ("swap-sign", "for (i = 0; i < nr; i--)"),
        ("swap-sign", "atomic_dec(&folio->count);"),
        ("swap-sign", 'stat_mod(folio, "a < b", nr);'),
        ("delete-count", ";"),
        ("return-early", "return; if (!run->nr)"),
    }
    assert expected <= got, sorted(got - expected)
    for m in made:
        # Nothing inside the comment or the string literal is ever touched.
        assert "folio_add(nr) in a comment" in m.text
        assert '"a <= b"' not in m.text and '"!(a < b)"' not in m.text
        assert m.patch == series.patches[0].path.name
    # Deterministic: same ids, same order, every id unique.
    again = [m.id for m in mutants.mutants_of(lines, [series.patches[0].path.name])]
    assert again == [m.id for m in made]
    assert len(set(again)) == len(again)


def test_every_mutant_is_a_git_am_patch_on_the_series(tree_and_series, tmp_path) -> None:
    tree, series = tree_and_series
    lines = series_lines.series_lines(tree, series)
    made = list(mutants.mutants_of(lines))
    assert made
    clone = tmp_path / "am"
    _git(tmp_path, "clone", "-q", str(tree), str(clone))
    _git(clone, "am", "-q", *[str(p.path) for p in series.patches])
    head = _git(clone, "rev-parse", "HEAD").strip()
    original = lines.final_text("mm/memory.c")
    for m in made:
        patch = tmp_path / f"{m.id}.patch"
        patch.write_text(m.patch_text(original))
        _git(clone, "am", "-q", str(patch))
        assert (clone / "mm" / "memory.c").read_text() == m.text
        _git(clone, "reset", "-q", "--hard", head)


def test_patch_ranges() -> None:
    fake = series_lines.SeriesLines(Path("."), [], {f"{n:04d}-x.patch": [] for n in range(1, 13)})
    assert mutants.select_patches(fake, "0007-0009") == [
        "0007-x.patch", "0008-x.patch", "0009-x.patch",
    ]  # fmt: skip
    assert mutants.select_patches(fake, "8,10") == ["0008-x.patch", "0010-x.patch"]
    with pytest.raises(ValueError, match="names no patch"):
        mutants.select_patches(fake, "40-41")
    with pytest.raises(ValueError, match="expected"):
        mutants.select_patches(fake, "seven")


def test_profile_patch_turns_gcov_on_for_the_series_objects(tree_and_series, tmp_path) -> None:
    tree, series = tree_and_series
    lines = series_lines.series_lines(tree, series)
    assert coverage.profiled_objects(lines) == {"mm": ["memory.o"]}
    patch = coverage.profile_patch(lines, tmp_path / "gcov.patch")
    clone = tmp_path / "am"
    _git(tmp_path, "clone", "-q", str(tree), str(clone))
    _git(clone, "am", "-q", *[str(p.path) for p in series.patches], str(patch))
    assert (clone / "mm" / "Makefile").read_text().endswith("GCOV_PROFILE_memory.o := y\n")
    assert (clone / "mm" / "memory.c").read_text() == lines.final_text("mm/memory.c")


def test_gcda_tarballs_round_trip(tmp_path) -> None:
    blob = bytes(range(256)) * 5
    staged = tmp_path / "guest" / "mm"
    staged.mkdir(parents=True)
    (staged / "memory.gcda").write_bytes(blob)
    # What the guest job sends: busybox tar cz | busybox base64, between frames.
    tarball = subprocess.run(
        ["tar", "cz", "-C", str(tmp_path / "guest"), "."], check=True, capture_output=True
    ).stdout
    encoded = base64.encodebytes(tarball).decode().splitlines()
    data = [
        "@SCENARIO x", "noise",
        f"{coverage.GCDA_BEGIN} fork-cow", *encoded, coverage.GCDA_END,
        f"{coverage.GCDA_BEGIN} truncated", *encoded[:2],  # the guest died: nothing written
    ]  # fmt: skip
    found = coverage.extract_gcda(data, tmp_path / "out")
    assert found == {"fork-cow": [tmp_path / "out" / "fork-cow" / "mm" / "memory.gcda"]}
    assert found["fork-cow"][0].read_bytes() == blob
    job = coverage.gcda_job(Path("/root/build"), "fork-cow")
    assert job.name == "gcov-fork-cow" and "/sys/kernel/debug/gcov/root/build" in job.command


def test_hunk_table_counts_code_lines_only(tree_and_series) -> None:
    tree, series = tree_and_series
    lines = series_lines.series_lines(tree, series)
    by_text = {a.text.strip(): a for a in lines.added}
    run_call = by_text["folio_remove_range(folio, run->page, run->nr);"]
    reset = by_text["run->nr = 0;"]
    cov = coverage.LineCoverage({("mm/memory.c", run_call.line): 3, ("mm/memory.c", reset.line): 0})
    table, summary = coverage.hunk_table(lines, cov)
    assert summary["covered"] == 1 and summary["code_lines"] == 2
    missed = [u for h in summary["hunks"] for u in h["uncovered_lines"]]
    assert missed == [{"line": reset.line, "text": "run->nr = 0;"}]
    assert "1/2 added code lines executed (50.0 %)" in table
    assert coverage.LineCoverage.from_json(cov.to_json()).counts == cov.counts


@pytest.mark.parametrize(
    ("results", "status", "detail"),
    [
        ({"splats": [{"kind": "WARNING", "job": "fork", "headline": "at mm/rmap.c:1"}],
          "scenarios": [{"name": "fork", "verdict": "error"}]},
         mutate.KILLED, "splat in fork: WARNING: at mm/rmap.c:1"),
        ({"splats": [], "machine": {"outcome": "done"},
          "scenarios": [{"name": "a", "verdict": "pass", "diff": ""},
                        {"name": "b", "verdict": "fail", "diff": "probe p1: W 1 != 2\nmore"}]},
         mutate.KILLED, "scenario b: probe p1: W 1 != 2"),
        ({"splats": [], "machine": {"outcome": "timeout", "timed_out_in": "b"},
          "scenarios": [{"name": "b", "verdict": "error", "reason": "hung"}]},
         mutate.TIMEOUT, "guest silent in b"),
        ({"splats": [], "machine": {"outcome": "done"},
          "scenarios": [{"name": "a", "verdict": "pass", "diff": ""}]},
         mutate.SURVIVED, ""),
    ],
)  # fmt: skip
def test_classify(results, status, detail) -> None:
    assert mutate.classify(results) == (status, detail)


def test_summary_score() -> None:
    results = [{"status": s, "seconds": 10.0} for s in
               ["killed"] * 6 + ["timeout", "survived", "not_covered", "stillborn", "equivalent"]]
    summary = mutate.summarise(results)
    assert summary["mutants"] == 11
    assert summary["score"] == round(7 / 9, 4)
    assert (summary["stillborn"], summary["equivalent"], summary["not_covered"]) == (1, 1, 1)


def test_a_mutant_runs_only_the_scenarios_that_run_its_lines() -> None:
    from types import SimpleNamespace

    def scenario(name: str) -> SimpleNamespace:
        return SimpleNamespace(name=name)

    every = (scenario("fork"), scenario("zap"), scenario("mremap"), scenario("fz1-0"))
    by_scenario = {"boot": {("mm/memory.c", 10)}, "fork": {("mm/memory.c", 40)},
                   "zap": {("mm/memory.c", 40), ("mm/rmap.c", 7)}, "mremap": set()}  # fmt: skip
    camp = SimpleNamespace(cfg=SimpleNamespace(scenarios=every), by_scenario=by_scenario,
                           options=mutate.Options())  # fmt: skip

    def names(file: str, line: int) -> list[str]:
        m = mutants.Mutant("x", "p", 1, file, line, "negate", "a", "b", "")
        return [s.name for s in mutate.scenarios_for(camp, m)]  # type: ignore[arg-type]

    # The scenarios that ran the line, and the generated workloads (no coverage of their own).
    assert names("mm/memory.c", 40) == ["fork", "zap", "fz1-0"]
    assert names("mm/rmap.c", 7) == ["zap", "fz1-0"]
    # A line the boot runs can change what every scenario sees.
    assert names("mm/memory.c", 10) == ["fork", "zap", "mremap", "fz1-0"]
