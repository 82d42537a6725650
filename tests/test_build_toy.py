"""build.build on a toy kernel tree: real git, real make, real kconfig-shaped steps.

The toy tree's Makefile answers `tinyconfig`, `olddefconfig` (which drops options no
Kconfig line defines, as kconfig does) and `bzImage` (it concatenates mm/*.c) and counts
its runs, so the tests see which steps a build skipped:
the re-apply from the first changed patch, the kconfig memo kept across C-only changes,
the tree-identity reuse that needs no make, and the automatic cache cap.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_patches import am_commits, make_patches

from harness import build, patches, prune, runconfig, source
from harness.errors import KconfigError

MAKEFILE = """VERSION = 6
PATCHLEVEL = 1
SUBLEVEL = 0
EXTRAVERSION =
tinyconfig defconfig:
\t@mkdir -p $(O) && printf 'CONFIG_BASE=y\\n' > $(O)/.config && echo run >> $(O)/kconfig-runs
olddefconfig:
\t@for l in $$(cat $(O)/.config); do s=$${l%%=*}; s=$${s#CONFIG_}; \\
\t  if [ $$s = BASE ] || grep -q "^config $$s$$" mm/Kconfig && ! grep -qx $$s mm/unmet; \\
\t  then echo $$l; fi; \\
\tdone > $(O)/.config.new && mv $(O)/.config.new $(O)/.config
bzImage:
\t@mkdir -p $(O)/arch/x86/boot && cat mm/*.c > $(O)/arch/x86/boot/bzImage
\t@echo run >> $(O)/make-runs
"""
MERGE = """#!/bin/sh
# merge_config.sh -m -O DIR BASE FRAGMENT...: append the fragments
shift; shift; dir=$1; shift; shift
cat "$@" >> "$dir/.config"
"""


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FOLIO_HARNESS_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "linux"
    (tree / "mm").mkdir(parents=True)
    (tree / "scripts" / "kconfig").mkdir(parents=True)
    (tree / "Makefile").write_text(MAKEFILE)
    merge = tree / "scripts" / "kconfig" / "merge_config.sh"
    merge.write_text(MERGE)
    merge.chmod(0o755)
    (tree / "mm" / "Kconfig").write_text("config FOO\n\tbool\nconfig UNMET\n\tbool\n")
    (tree / "mm" / "unmet").write_text("UNMET\n")  # options whose dependencies fail
    (tree / "mm" / "a.c").write_text("int a;\n")
    (tree / "mm" / "b.c").write_text("int b;\n")
    return tree


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def request(tmp_path: Path, src: source.SourceTree, series: patches.Series) -> build.BuildRequest:
    fragment = tmp_path / "foo.config"
    fragment.write_text("CONFIG_FOO=y\n")
    spec = runconfig.KernelSpec(src.tree, None, series.path, "tinyconfig", (fragment,), "")
    return build.BuildRequest(spec, src, series, jobs=1)


def versions(toy: Path, tmp_path: Path, name: str, b_text: str, subject: str = "mm: b",
             extra: list[tuple[str, str, str]] | None = None) -> patches.Series:  # fmt: skip
    out = tmp_path / name
    out.mkdir()
    make_patches(toy, out, [("mm/a.c", "int a1;\n", "mm: a"), ("mm/b.c", b_text, subject),
                            *(extra or [])])  # fmt: skip
    return patches.read_series(out / "series")


def test_an_edit_rebuilds_from_the_changed_patch_without_kconfig(toy: Path, tmp_path: Path) -> None:
    v1 = versions(toy, tmp_path, "v1", "int b1;\n")
    v2 = versions(toy, tmp_path, "v2", "int b2;\n")
    reworded = versions(toy, tmp_path, "v3", "int b2;\n", subject="mm: b, reworded")
    kconfig_change = versions(toy, tmp_path, "v4", "int b2;\n",
                              extra=[("mm/Kconfig", "config FOO\n\tbool\nconfig BAR\n",
                                      "mm: BAR")])  # fmt: skip
    src = source.prepare(toy)
    log = tmp_path / "build.log"
    kconfig_runs = src.tree.parents[2] / "builds" / f"{src.identity}-kconfig" / "kconfig-runs"

    first = build.build(request(tmp_path, src, v1), log)
    make_runs = first.build_dir / "make-runs"
    assert not first.cached and first.bzimage.read_text() == "int a1;\nint b1;\n"
    assert (runs(kconfig_runs), runs(make_runs), am_commits(src.tree)) == (1, 1, 2)

    second = build.build(request(tmp_path, src, v2), log)
    assert second.bzimage.read_text() == "int a1;\nint b2;\n"
    assert second.build_dir == first.build_dir
    # One git am (the changed patch), no kconfig (only C changed), one make.
    assert (runs(kconfig_runs), runs(make_runs), am_commits(src.tree)) == (1, 2, 3)

    third = build.build(request(tmp_path, src, reworded), log)
    # Only a commit message differs: the same tree was built as v2's kernel, no make.
    assert third.cached and third.key != second.key
    assert third.bzimage.read_text() == second.bzimage.read_text()
    assert runs(make_runs) == 2
    assert (
        json.loads((third.bzimage.parent / "meta.json").read_text())["same_tree_as"] == second.key
    )

    again = build.build(request(tmp_path, src, v2), log)
    assert again.cached and again.key == second.key and runs(make_runs) == 2

    build.build(request(tmp_path, src, kconfig_change), log)
    assert runs(kconfig_runs) == 2  # a Kconfig file changed: kconfig again


def test_a_prefix_builds_in_the_given_directory_with_lenient_kconfig(
    toy: Path, tmp_path: Path
) -> None:
    new_kconfig = ("mm/Kconfig", "config FOO\n\tbool\nconfig UNMET\n\tbool\nconfig NEW\n\tbool\n",
                   "mm: NEW")  # fmt: skip
    series = versions(toy, tmp_path, "v1", "int b1;\n", extra=[new_kconfig])
    src = source.prepare(toy)
    req = request(tmp_path, src, series.prefix(2))
    (tmp_path / "foo.config").write_text("CONFIG_FOO=y\nCONFIG_NEW=y\n")  # the series' fragment
    with pytest.raises(KconfigError, match="CONFIG_NEW: requested y"):
        build.build(req, tmp_path / "log")  # the prefix does not define NEW yet
    shared = tmp_path / "one-build-dir"
    lenient = dataclasses.replace(req, build_dir=shared, lenient_kconfig=True)
    result = build.build(lenient, tmp_path / "log")
    assert result.build_dir == shared and runs(shared / "make-runs") == 1
    assert result.bzimage.read_text() == "int a1;\nint b1;\n"
    whole = build.build(dataclasses.replace(lenient, series=series), tmp_path / "log")
    assert whole.build_dir == shared and runs(shared / "make-runs") == 2
    # Lenient is not blind: an option the tree defines and kconfig dropped is an error.
    (tmp_path / "foo.config").write_text("CONFIG_FOO=y\nCONFIG_NEW=y\nCONFIG_UNMET=y\n")
    with pytest.raises(KconfigError, match="CONFIG_UNMET: requested y"):
        build.build(dataclasses.replace(lenient, series=series), tmp_path / "log")


def test_the_cap_evicts_old_kernels_after_a_build(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source.prepare(toy)
    built = []
    for i in range(4):
        series = versions(toy, tmp_path, f"v{i}", f"int b{i};\n" + "x" * 5000 + "\n")
        built.append(build.build(request(tmp_path, src, series), tmp_path / "log"))
    monkeypatch.setenv(prune.CAP_ENV, "off")
    assert all(b.bzimage.exists() for b in built)
    # A cap that holds the build directory and about two kernels.
    sizes = {e.path: e.size for e in prune.entries()}
    build_dir = sizes[built[0].build_dir]
    kernel = sizes[built[0].bzimage.parent]
    monkeypatch.setenv(prune.CAP_ENV, str(build_dir + 2 * kernel + kernel // 2))
    latest = build.build(request(tmp_path, src, versions(toy, tmp_path, "v9", "int b9;\n")),
                         tmp_path / "log")  # fmt: skip
    assert latest.bzimage.exists() and latest.build_dir.exists()
    assert [b.bzimage.exists() for b in built] == [False, False, False, True]
