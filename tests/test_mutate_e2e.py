"""harness mutate end to end: real mutants of the bundled series, built and booted.

Reuses configs/series.yaml's cached kernel and build directory: each mutant recompiles one
object and relinks (about a minute each under TCG on 2 cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_kernel_tools

from harness import patches, runconfig, source
from harness.campaign import lines, mutants

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).parent / "data" / "e2e" / "mutate-series.yaml"

pytestmark = [pytest.mark.e2e, needs_kernel_tools]


def _pick() -> tuple[str, str]:
    """A mutant the fork scenario must kill, and one the compiler proves equivalent."""
    cfg = runconfig.load(CONFIG)
    src = source.prepare(cfg.kernel.source, cfg.kernel.ref)
    series = lines.series_lines(src.tree, patches.read_series(cfg.kernel.series))
    made = list(mutants.mutants_of(series))
    # fork's copy of a PTE run leaves W of the child's tuple out
    killed = next(m.id for m in made if m.operator == "delete-call"
                  and "folio_pt_map_ptes(folio, dst_vma" in m.before)  # fmt: skip
    # an assertion's bound, compiled out without CONFIG_DEBUG_VM
    equivalent = next(m.id for m in made if m.operator == "off-by-one"
                      and "VM_WARN_ON_ONCE_FOLIO" in m.before)  # fmt: skip
    return killed, equivalent


def _tree_state(cfg: runconfig.RunConfig) -> tuple[str, str]:
    src = source.prepare(cfg.kernel.source, cfg.kernel.ref)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src.tree, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                            cwd=src.tree, capture_output=True, text=True, check=True).stdout
    return head, status


def test_mutants_are_killed_or_proved_equivalent_and_the_tree_is_restored(tmp_path) -> None:
    killed, equivalent = _pick()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--results", str(tmp_path), "mutate",
         "--config", str(CONFIG), "--mutant", killed, "--mutant", equivalent],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = (tmp_path / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["mutants"], summary["killed"], summary["equivalent"]) == (2, 1, 1)
    assert summary["score"] == 1.0 and summary["complete"]
    dead = json.loads((run_dir / "mutants" / killed / "result.json").read_text())
    assert dead["status"] == "killed"
    assert dead["detail"].startswith(("scenario fork-pte-mapped", "splat"))
    assert (run_dir / "mutants" / killed / f"{killed}.patch").read_text().startswith("From ")
    same = json.loads((run_dir / "mutants" / equivalent / "result.json").read_text())
    assert same["status"] == "equivalent" and "boot_seconds" not in same
    # The shared source tree holds the series again, clean; no mutant kernel is kept.
    cfg = runconfig.load(CONFIG)
    head, status = _tree_state(cfg)
    assert status == ""
    src = source.prepare(cfg.kernel.source, cfg.kernel.ref)
    subject = subprocess.run(["git", "log", "-1", "--format=%s", head], cwd=src.tree,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert not subject.startswith("mutant")
    assert not list(run_dir.glob("mutants/*/bzImage"))
    # Resuming a finished campaign boots nothing again.
    again = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--results", str(tmp_path), "mutate",
         "--config", str(CONFIG), "--mutant", killed, "--mutant", equivalent,
         "--resume", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["killed"] == 1
