"""End to end: the kernel's vm selftests in a real guest, with a test that never ends.

Shares the user's kernel and selftests caches (~/.cache/folio-harness); results go to a
temporary directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_kernel_tools

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).parent / "data" / "e2e" / "selftests-hang.yaml"

pytestmark = [
    pytest.mark.e2e,
    needs_kernel_tools,
]


def test_a_hanging_selftest_is_a_timeout_and_the_boot_goes_on(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--results", str(tmp_path), "run",
         "--config", str(CONFIG)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    results = json.loads((tmp_path / "latest" / "results.json").read_text())
    table = {r["name"]: r for r in results["selftests"]["table"]}
    assert table["madv_populate"]["outcome"] == "pass"
    assert table["madv_populate"]["counts"]["pass"] >= 10
    assert table["hangs"]["outcome"] == "timeout"
    assert table["hangs"]["status"] == 137 and table["hangs"]["seconds"] >= 9
    # The test after the hang ran in the same boot: the in-guest deadline held.
    assert table["mremap_dontunmap"]["outcome"] == "pass"
    assert {r["boot"] for r in table.values()} == {1}
    assert "hangs" in out.stdout and "TIMEOUT" in out.stdout
