"""End to end: the rmap audit of THPs that only a pipe holds (guest-tests/pipeaudit.c).

The series' audit once walked an anon folio's rmap without pinning its anon_vma; a THP held
by a pipe after vmsplice(), its mapper gone, is exactly such a folio. configs/pipeaudit.yaml
runs on series-debug.yaml's kernel (DEBUG_VM, lockdep: one cache entry for both). Results go
to a temporary directory.
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
CONFIG = ROOT / "configs" / "pipeaudit.yaml"


def test_the_config_shares_the_debug_kernel() -> None:
    cfg = runconfig.load(CONFIG)
    assert cfg.kernel == runconfig.load(ROOT / "configs" / "series-debug.yaml").kernel
    assert cfg.selftests is not None and cfg.selftests.programs == ()  # no selftests build
    (spec,) = cfg.selftests.tests
    assert (spec.program, spec.guest) == ("pipeaudit", True)


@pytest.mark.e2e
@needs_kernel_tools
def test_thps_held_by_a_pipe_audit_as_unmapped(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--results", str(tmp_path), "run",
         "--config", str(CONFIG)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "latest" / "results.json").read_text())
    (test,) = results["selftests"]["table"]
    assert test["outcome"] == "pass" and not test["splats"]
    log = (tmp_path / "latest" / test["output"]).read_text()
    # Each shape of mapping was audited at least once (a round skips only when the mapper got
    # no THP), and the kernel found no W wrong.
    for shape in ("pmd", "pte", "half"):
        assert any(line.startswith("ok ") and f"- {shape}: " in line and "SKIP" not in line
                   for line in log.splitlines()), log  # fmt: skip
    assert "tuples=0" in log and "mismatches=0" in log
    assert "W errors: " in log and "not ok" not in log
