"""End to end: `harness bisect` finds a bad patch planted in a series on the base kernel.

The series is three patches to fs/proc/page.c on top of the configs/thp.yaml kernel (the
suite's baseline, so prefix 0 is found in the cache): a harmless comment change, a
patch that makes /proc/kpagecount report one mapping too many, and another harmless
comment change. Bisect runs the 3 patches (bad), the base (good), then prefixes 1 (good)
and 2 (bad), built incrementally in one build directory, and names patch 2.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_kernel_tools

from harness import runconfig, source

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.e2e, needs_kernel_tools]

KPAGECOUNT = "fs/proc/page.c"


def mail_patch(path: str, old: str, new: str, subject: str) -> str:
    """A patch in git format-patch's shape, git am-able, changing `path` from old to new."""
    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return (
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        "From: folio-harness tests <tests@folio-harness.invalid>\n"
        "Date: Fri, 4 Dec 2026 12:00:00 +0000\n"
        f"Subject: [PATCH] {subject}\n\n{subject}.\n---\n"
        f"diff --git a/{path} b/{path}\n" + "".join(diff) + "-- \n2.39.5\n\n"
    )


def test_bisect_finds_a_planted_bad_patch(tmp_path: Path) -> None:
    thp = runconfig.load(ROOT / "configs" / "thp.yaml")
    src = source.prepare(thp.kernel.source)
    base = subprocess.run(
        ["git", "show", f"{source.BASE_TAG}:{KPAGECOUNT}"],
        cwd=src.tree, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    reworded = base.replace(" * Note that page->_mapcount", " * Note: page->_mapcount", 1)
    wrong = reworded.replace("pcount = page_mapcount(ppage);", "pcount = page_mapcount(ppage) + 1;")
    harmless = wrong.replace("/proc/kpagecount", "/proc/kpagecount (per page)", 1)
    assert base != reworded != wrong != harmless
    patches_dir = tmp_path / "kernel-patches"
    patches_dir.mkdir()
    names = [
        "0001-fs-proc-reword-a-comment.patch",
        "0002-fs-proc-report-one-mapping-too-many.patch",
        "0003-fs-proc-name-the-file.patch",
    ]
    subjects = [
        "fs/proc: reword a comment",
        "fs/proc: report one mapping too many",
        "fs/proc: name the file",
    ]
    contents = [(base, reworded), (reworded, wrong), (wrong, harmless)]
    for name, subject, (old, new) in zip(names, subjects, contents, strict=True):
        (patches_dir / name).write_text(mail_patch(KPAGECOUNT, old, new, subject))
    (patches_dir / "series").write_text("\n".join(names) + "\n")

    config = tmp_path / "bisect.yaml"
    text = (ROOT / "configs" / "thp.yaml").read_text()
    text = text.replace("series: none", f"series: {patches_dir / 'series'}")
    text = text.replace("[kconfig/", f"[{ROOT}/configs/kconfig/")
    text = text.replace("workloads/", f"{ROOT}/configs/workloads/")
    config.write_text(text)

    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--results", str(results), "bisect",
         "--config", str(config), "--scenario", "anon-thp-pmd"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"the first bad patch is 2 of 3: {patches_dir / names[1]}" in out
    assert "+\t\t\tpcount = page_mapcount(ppage) + 1;" in out  # printed with its diff
    summary = json.loads(next(results.glob("*-bisect-bisect/bisect.json")).read_text())
    assert [(s["prefix"], s["bad"]) for s in summary["steps"]] == [
        (3, True), (0, False), (1, False), (2, True)
    ]  # fmt: skip
    # Each prefix ran the selected scenario only; the base was the cached baseline kernel
    # and every prefix was built in the build directory of the whole series.
    runs = [Path(step["run"]) for step in summary["steps"]]
    build_dirs = set()
    for run_dir in runs:
        data = json.loads((run_dir / "results.json").read_text())
        assert [s["name"] for s in data["scenarios"]] == ["anon-thp-pmd"]
        build_dirs.add(json.loads((run_dir / "metadata.json").read_text())["build"]["build_dir"])
    assert len(build_dirs) == 1
    assert json.loads((runs[1] / "results.json").read_text())["kernel"]["cached"] is True
    bad = json.loads((runs[3] / "results.json").read_text())
    assert bad["scenarios"][0]["verdict"] == "fail"
