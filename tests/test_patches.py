"""Series handling on a tiny fake kernel tree: apply once, reapply never, rebuild little."""

import os
import subprocess
from pathlib import Path

import pytest

from harness import patches, source
from harness.errors import ConfigError, PatchError

MAKEFILE = "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\nEXTRAVERSION =\n"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


@pytest.fixture
def fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FOLIO_HARNESS_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "linux"
    (tree / "mm").mkdir(parents=True)
    (tree / "Makefile").write_text(MAKEFILE)
    (tree / "mm" / "memory.c").write_text("int memory;\n")
    (tree / "mm" / "rmap.c").write_text("int rmap;\n")
    return tree


def make_patches(tree: Path, out: Path, edits: list[tuple[str, str, str]]) -> list[str]:
    """Commit each (file, new content, subject) on a copy of tree; format-patch them."""
    work = out / "work"
    subprocess.run(["cp", "-a", str(tree), str(work)], check=True)
    subprocess.run([*GIT, "init", "-q"], cwd=work, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", "base"], cwd=work, check=True)
    for name, content, subject in edits:
        (work / name).write_text(content)
        subprocess.run([*GIT, "commit", "-qam", subject], cwd=work, check=True)
    result = subprocess.run(
        [*GIT, "format-patch", f"-{len(edits)}", "-o", str(out)],
        cwd=work, check=True, capture_output=True, text=True,
    )  # fmt: skip
    names = [Path(p).name for p in result.stdout.split()]
    (out / "series").write_text("# test series\n" + "\n".join(names) + "\n")
    return names


def test_series_applies_once_and_reapply_is_a_no_op(fake_tree: Path, tmp_path: Path) -> None:
    src = source.prepare(fake_tree)
    assert src.version == "6.1.0"
    out = tmp_path / "p1"
    out.mkdir()
    make_patches(fake_tree, out, [("mm/memory.c", "int memory2;\n", "mm: change memory")])
    series = patches.read_series(out / "series")
    head = patches.apply(src, series)
    assert (src.tree / "mm/memory.c").read_text() == "int memory2;\n"
    mtime = (src.tree / "mm/memory.c").stat().st_mtime_ns
    assert patches.apply(src, series) == head  # no second git am
    assert (src.tree / "mm/memory.c").stat().st_mtime_ns == mtime
    # Back to the baseline: the pristine content returns.
    patches.apply(src, patches.read_series(None))
    assert (src.tree / "mm/memory.c").read_text() == "int memory;\n"


def test_changing_one_patch_touches_only_its_file(fake_tree: Path, tmp_path: Path) -> None:
    src = source.prepare(fake_tree)
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    make_patches(
        fake_tree, v1, [("mm/memory.c", "int m1;\n", "mm: a"), ("mm/rmap.c", "int r1;\n", "mm: b")]
    )
    make_patches(
        fake_tree, v2, [("mm/memory.c", "int m1;\n", "mm: a"), ("mm/rmap.c", "int r2;\n", "mm: b")]
    )
    patches.apply(src, patches.read_series(v1 / "series"))
    old = 1_000_000_000
    set_mtimes(src.tree, ["mm/memory.c", "mm/rmap.c"], old)
    patches.apply(src, patches.read_series(v2 / "series"))
    assert (src.tree / "mm/rmap.c").read_text() == "int r2;\n"
    assert (src.tree / "mm/memory.c").stat().st_mtime_ns == old  # same content: same mtime
    assert (src.tree / "mm/rmap.c").stat().st_mtime_ns != old


def test_patch_that_does_not_apply_names_file_and_hunk(fake_tree: Path, tmp_path: Path) -> None:
    src = source.prepare(fake_tree)
    out = tmp_path / "p"
    out.mkdir()
    names = make_patches(fake_tree, out, [("mm/rmap.c", "int rmap_new;\n", "mm: rmap")])
    # Rewrite the context so it cannot apply on the base.
    patch = out / names[0]
    patch.write_text(patch.read_text().replace("-int rmap;", "-int something_else;"))
    with pytest.raises(PatchError) as info:
        patches.apply(src, patches.read_series(out / "series"))
    message = str(info.value)
    assert names[0] in message
    assert "mm/rmap.c" in message
    # The tree is left on the clean base, ready for the next run.
    assert (src.tree / "mm/rmap.c").read_text() == "int rmap;\n"


def test_series_file_errors(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("0001-a.patch\n# comment\n\n0002-missing.patch -p1\n")
    (tmp_path / "0001-a.patch").write_text("x")
    with pytest.raises(ConfigError, match=r"series:4: patch '0002-missing.patch' not found"):
        patches.read_series(tmp_path / "series")
    (tmp_path / "series").write_text("0001-a.patch\n0001-a.patch\n")
    with pytest.raises(ConfigError, match="listed twice"):
        patches.read_series(tmp_path / "series")


def test_series_identity_follows_content(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("0001-a.patch\n")
    (tmp_path / "0001-a.patch").write_text("one")
    first = patches.read_series(tmp_path / "series").identity
    (tmp_path / "0001-a.patch").write_text("two")
    assert patches.read_series(tmp_path / "series").identity != first
    assert patches.read_series(None).identity == "none"


def set_mtimes(tree: Path, names: list[str], ns: int) -> None:
    """Old mtimes, as a build long ago would have left them (and git's index agrees)."""
    for name in names:
        os.utime(tree / name, ns=(ns, ns))
    subprocess.run(["git", "update-index", "-q", "--refresh"], cwd=tree, check=False)


def commits_of(tree: Path) -> list[str]:
    out = subprocess.run(
        ["git", "rev-list", "--reverse", f"{source.BASE_TAG}..HEAD"],
        cwd=tree, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.split()


def am_commits(tree: Path) -> int:
    """How many commits git am has made in this tree so far (its reflog entries)."""
    out = subprocess.run(["git", "reflog", "--format=%gs"], cwd=tree, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return sum(1 for line in out.stdout.splitlines() if line.startswith("am:"))


def three_patches(fake_tree: Path, out: Path, last: str) -> patches.Series:
    out.mkdir()
    (fake_tree / "mm" / "gup.c").write_text("int gup;\n")
    make_patches(
        fake_tree,
        out,
        [("mm/memory.c", "int m1;\n", "mm: a"), ("mm/rmap.c", "int r1;\n", "mm: b"),
         ("mm/gup.c", last, "mm: c")],
    )  # fmt: skip
    return patches.read_series(out / "series")


def test_reapply_starts_at_the_first_changed_patch(fake_tree: Path, tmp_path: Path) -> None:
    v1 = three_patches(fake_tree, tmp_path / "v1", "int g1;\n")
    v2 = three_patches(fake_tree, tmp_path / "v2", "int g2;\n")
    src = source.prepare(fake_tree)
    patches.apply(src, v1)
    first = commits_of(src.tree)
    old = 1_000_000_000
    set_mtimes(src.tree, ["mm/memory.c", "mm/rmap.c", "mm/gup.c"], old)
    assert am_commits(src.tree) == 3
    patches.apply(src, v2)
    second = commits_of(src.tree)
    # The unchanged prefix keeps its commits: one git am commit, for the changed patch.
    assert am_commits(src.tree) == 4
    assert second[:2] == first[:2] and second[2] != first[2]
    assert (src.tree / "mm/gup.c").read_text() == "int g2;\n"
    assert (src.tree / "mm/memory.c").stat().st_mtime_ns == old
    assert (src.tree / "mm/rmap.c").stat().st_mtime_ns == old
    assert (src.tree / "mm/gup.c").stat().st_mtime_ns != old
    # Back to v1: only its last patch is applied again, and gup.c's mtime is new again.
    patches.apply(src, v1)
    assert am_commits(src.tree) == 5
    assert commits_of(src.tree)[:2] == first[:2]
    assert (src.tree / "mm/gup.c").read_text() == "int g1;\n"


def test_prefix_and_appended_patch_reuse_the_branch(fake_tree: Path, tmp_path: Path) -> None:
    series = three_patches(fake_tree, tmp_path / "v1", "int g1;\n")
    src = source.prepare(fake_tree)
    extra_dir = tmp_path / "extra"
    extra_dir.mkdir()
    (fake_tree / "mm" / "gup.c").write_text("int g1;\n")  # the series' result for gup.c
    extra = make_patches(fake_tree, extra_dir, [("mm/gup.c", "int g3;\n", "mm: mutant")])
    patches.apply(src, series)
    full = commits_of(src.tree)

    mutant = series.appended(extra_dir / extra[0])
    assert len(mutant.patches) == 4 and mutant.identity != series.identity
    patches.apply(src, mutant)
    assert commits_of(src.tree)[:3] == full and am_commits(src.tree) == 4  # one git am
    assert (src.tree / "mm/gup.c").read_text() == "int g3;\n"

    patches.apply(src, series.prefix(1))
    assert commits_of(src.tree) == full[:1]
    assert (src.tree / "mm/rmap.c").read_text() == "int rmap;\n"
    patches.apply(src, series.prefix(2))
    assert commits_of(src.tree)[:1] == full[:1] and len(commits_of(src.tree)) == 2
    assert am_commits(src.tree) == 5
    assert series.prefix(0).identity == "none"
    with pytest.raises(ConfigError, match="not found"):
        series.appended(tmp_path / "missing.patch")


def test_failing_patch_keeps_the_patches_before_it(fake_tree: Path, tmp_path: Path) -> None:
    series = three_patches(fake_tree, tmp_path / "v1", "int g1;\n")
    third = series.patches[2].path
    third.write_text(third.read_text().replace("-int gup;", "-int nothing;"))
    series = patches.read_series(tmp_path / "v1" / "series")
    src = source.prepare(fake_tree)
    with pytest.raises(PatchError, match=r"patch 3 of 3") as info:
        patches.apply(src, series)
    assert third.name in str(info.value) and "mm/gup.c" in str(info.value)
    kept = commits_of(src.tree)
    assert len(kept) == 2
    status = subprocess.run(["git", "status", "--porcelain"], cwd=src.tree,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert status.stdout.strip() == ""
    patches.apply(src, series.prefix(2))
    assert commits_of(src.tree) == kept and am_commits(src.tree) == 2  # nothing to do


def test_a_file_edited_by_hand_is_put_back_and_rebuilt(fake_tree: Path, tmp_path: Path) -> None:
    series = three_patches(fake_tree, tmp_path / "v1", "int g1;\n")
    src = source.prepare(fake_tree)
    patches.apply(src, series)
    old = 1_000_000_000
    set_mtimes(src.tree, ["mm/memory.c", "mm/rmap.c", "mm/gup.c"], old)
    (src.tree / "mm/memory.c").write_text("int edited_by_hand;\n")
    patches.apply(src, series)  # nothing to apply: the tree is put back
    assert (src.tree / "mm/memory.c").read_text() == "int m1;\n"
    assert (src.tree / "mm/memory.c").stat().st_mtime_ns != old  # make must rebuild it
    assert (src.tree / "mm/rmap.c").stat().st_mtime_ns == old
    assert am_commits(src.tree) == 3  # the commits are still good

    # An edited file that a changed series rewrites to its old content gets a new mtime:
    # the build directory may hold objects of the edited content.
    v2 = tmp_path / "v2"
    v2.mkdir()
    make_patches(fake_tree, v2, [("mm/memory.c", "int m1;\n", "mm: a"),
                                 ("mm/rmap.c", "int r2;\n", "mm: b changed"),
                                 ("mm/gup.c", "int g1;\n", "mm: c")])  # fmt: skip
    set_mtimes(src.tree, ["mm/memory.c", "mm/rmap.c", "mm/gup.c"], old)
    (src.tree / "mm/gup.c").write_text("int g1;\nint edited;\n")
    os.utime(src.tree / "mm/gup.c", ns=(old, old))  # edited, then built, long ago
    patches.apply(src, patches.read_series(v2 / "series"))
    assert (src.tree / "mm/gup.c").read_text() == "int g1;\n"
    assert (src.tree / "mm/gup.c").stat().st_mtime_ns != old
    assert (src.tree / "mm/memory.c").stat().st_mtime_ns == old  # the kept prefix
    (src.tree / "mm/memory.c").write_text("int edited_by_hand;\n")
    patches.apply(src, patches.read_series(None))
    assert (src.tree / "mm/memory.c").read_text() == "int memory;\n"


def test_identity_of_follows_only_the_wanted_files(tmp_path: Path, fake_tree: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out, text in ((a, "int r1;\n"), (b, "int r2;\n")):
        out.mkdir()
        make_patches(fake_tree, out, [("mm/memory.c", "int m1;\n", "mm: a"),
                                      ("mm/rmap.c", text, "mm: b")])  # fmt: skip
    sa, sb = patches.read_series(a / "series"), patches.read_series(b / "series")
    assert sa.patches[1].touched_files() == ["mm/rmap.c"]
    memory_only = lambda name: name == "mm/memory.c"  # noqa: E731
    assert sa.identity_of(memory_only) == sb.identity_of(memory_only) != "none"
    assert sa.identity_of(lambda n: n == "mm/rmap.c") != sb.identity_of(lambda n: n == "mm/rmap.c")
    assert sa.identity_of(lambda n: n.startswith("kernel/")) == "none"


def test_the_import_is_packed_and_git_never_gcs_in_the_background(fake_tree: Path) -> None:
    src = source.prepare(fake_tree)

    def git_out(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=src.tree, capture_output=True, text=True,
                              check=False).stdout.strip()  # fmt: skip

    counts = dict(line.split(": ") for line in git_out("count-objects", "-v").splitlines())
    assert counts["count"] == "0" and int(counts["in-pack"]) >= 4  # nothing loose
    assert git_out("config", "gc.autoDetach") == "false"
    assert git_out("config", "gc.auto") == ""  # git's default threshold again
    assert not (src.tree / ".git" / "gc.pid").exists()
