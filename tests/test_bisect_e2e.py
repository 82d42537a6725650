"""End to end: `harness bisect` finds a bad patch planted in a copy of the kernel series.

The copy is the real series (so its first 12 patches are the suite's series kernel,
found in the cache) plus a patch that makes /proc/kpagecount report one mapping too many,
plus a harmless patch after it. Knowing the 12 patches pass (--good 12), bisect runs
the 14-patch series, the 12, and then the 13 between them, built incrementally in one
build directory.
"""

from __future__ import annotations

import difflib
import json
import shutil
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
    series_cfg = runconfig.load(ROOT / "configs" / "series.yaml")
    src = source.prepare(series_cfg.kernel.source)
    base = subprocess.run(
        ["git", "show", f"{source.BASE_TAG}:{KPAGECOUNT}"],
        cwd=src.tree, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    patches_dir = tmp_path / "kernel-patches"
    shutil.copytree(ROOT / "kernel-patches", patches_dir)
    assert not any(KPAGECOUNT in p.read_text() for p in patches_dir.glob("*.patch"))

    wrong = base.replace("pcount = page_mapcount(ppage);", "pcount = page_mapcount(ppage) + 1;")
    assert wrong != base
    harmless = wrong.replace(" * Note that page->_mapcount", " * Note: page->_mapcount", 1)
    assert harmless != wrong
    bad_name = "0013-fs-proc-report-one-mapping-too-many.patch"
    (patches_dir / bad_name).write_text(
        mail_patch(KPAGECOUNT, base, wrong, "fs/proc: report one mapping too many")
    )
    (patches_dir / "0014-fs-proc-reword-a-comment.patch").write_text(
        mail_patch(KPAGECOUNT, wrong, harmless, "fs/proc: reword a comment")
    )
    with (patches_dir / "series").open("a") as f:
        f.write(f"{bad_name}\n0014-fs-proc-reword-a-comment.patch\n")

    config = tmp_path / "bisect.yaml"
    text = (ROOT / "configs" / "series.yaml").read_text()
    text = text.replace("../kernel-patches/series", str(patches_dir / "series"))
    text = text.replace("[kconfig/", f"[{ROOT}/configs/kconfig/")
    text = text.replace(", kconfig/", f", {ROOT}/configs/kconfig/")
    text = text.replace("workloads/", f"{ROOT}/configs/workloads/")
    config.write_text(text)

    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--results", str(results), "bisect",
         "--config", str(config), "--scenario", "anon-thp-pmd", "--good", "12"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"the first bad patch is 13 of 14: {patches_dir / bad_name}" in out
    assert "+\t\t\tpcount = page_mapcount(ppage) + 1;" in out  # printed with its diff
    summary = json.loads(next(results.glob("*-bisect-bisect/bisect.json")).read_text())
    assert [(s["prefix"], s["bad"]) for s in summary["steps"]] == [
        (14, True), (12, False), (13, True)
    ]  # fmt: skip
    # Each prefix ran the selected scenario only, and all were built in one directory.
    build_dirs = set()
    for step in summary["steps"]:
        run_dir = Path(step["run"])
        data = json.loads((run_dir / "results.json").read_text())
        assert [s["name"] for s in data["scenarios"]] == ["anon-thp-pmd"]
        meta = json.loads((run_dir / "metadata.json").read_text())
        build_dirs.add(meta["build"]["build_dir"])
    assert len(build_dirs) == 1
    bad_run = json.loads((Path(summary["steps"][2]["run"]) / "results.json").read_text())
    assert bad_run["scenarios"][0]["verdict"] == "fail"
