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
    for name in ("mm/memory.c", "mm/rmap.c"):
        os.utime(src.tree / name, ns=(old, old))
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
