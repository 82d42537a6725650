"""harness fuzz end to end: a short fixed-seed campaign on the series kernel, as a user runs it.

It reuses the series kernel the suite already builds (configs/series.yaml), runs a few
hundred generated workloads in two boots and expects nothing found: every mismatch the
fuzzer ever found in this seed's range is fixed (model, mmwork) or a named scenario.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_kernel_tools

from harness import runconfig

ROOT = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness.cli"]
SEED = 20261204
COUNT = 300

pytestmark = [pytest.mark.e2e, needs_kernel_tools]


def test_fixed_seed_campaign_on_the_series_kernel(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(
        [*HARNESS, "--results", str(results), "fuzz", "--config", "configs/series.yaml",
         "--seed", str(SEED), "--count", str(COUNT), "--batch", "150"],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    summary_path = results / "latest" / "fuzz" / "summary.json"
    assert summary_path.exists(), out
    summary = json.loads(summary_path.read_text())
    assert proc.returncode == 0, out + "\n".join(
        Path(p).with_suffix(".diff").read_text() for p in summary["found"]
    )
    assert summary["seed"] == SEED and summary["workloads"] == COUNT
    assert summary["found"] == [] and summary["mismatches"] == 0 and summary["crashes"] == 0
    assert summary["passed"] + summary["environment"] == COUNT
    assert summary["environment"] <= COUNT // 20  # the generator avoids what the model can't say
    assert summary["boots"] == 2
    assert summary["workloads_per_second"] > 0
    assert {"boot", "jobs", "judge", "model", "job_median"} <= set(summary["seconds"])
    ops = {c["op"] for c in summary["coverage"]}
    assert ops >= {"mmap", "munmap", "mremap", "mprotect", "madvise", "touch", "fork", "probe"}
    # The printed table: op x kind x alignment.
    assert "anon/ali" in proc.stdout and "pfile/mis" in proc.stdout
    # The kernel was the series' (the audit ran): W and V are checked, not just predicted.
    run_results = json.loads((results / "latest" / "results.json").read_text())
    assert run_results["kernel"]["series"]


def test_a_found_workload_is_a_config_harness_run_accepts(tmp_path: Path) -> None:
    """What fuzz saves under found/ is a run config with the scenario inline."""
    from harness.campaign import fuzz

    cfg = runconfig.load(ROOT / "configs" / "series.yaml")
    doc = {
        "name": "fuzz-x",
        "description": "d",
        "setup": {"thp_enabled": "always"},
        "steps": [
            {"mmap": {"map": "a", "length": "2M", "at": 0}},
            {"touch": {"map": "a", "write": True}},
            {"probe": {"label": "p", "map": "a"}},
        ],
    }
    path = tmp_path / "found.yaml"
    path.write_text(fuzz._found_config(cfg, doc, "a finding\nRe-run: harness run"))
    again = runconfig.load(path)
    assert [s.name for s in again.scenarios] == ["fuzz-x"]
    assert again.kernel == cfg.kernel
    proc = subprocess.run(
        [*HARNESS, "--results", str(tmp_path / "r"), "run", "--config", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
