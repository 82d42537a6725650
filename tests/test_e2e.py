"""End to end: build and boot a real 6.1 kernel in QEMU through the CLI, as a user would.

These share the user's kernel cache (~/.cache/folio-harness), so only the first run on a
machine compiles; results go to a temporary directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_kernel_tools

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "e2e"
HARNESS = [sys.executable, "-m", "harness.cli"]

pytestmark = [
    pytest.mark.e2e,
    needs_kernel_tools,
]


def harness(*args: str, results: Path, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, "--results", str(results), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def qemu_processes(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if marker in line]


def latest(results: Path) -> tuple[dict, dict]:  # type: ignore[type-arg]
    run_dir = results / "latest"
    return (
        json.loads((run_dir / "results.json").read_text()),
        json.loads((run_dir / "metadata.json").read_text()),
    )


@pytest.fixture(scope="module")
def main_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    results = tmp_path_factory.mktemp("results")
    return results, harness("run", "--config", "configs/thp.yaml", results=results)


def test_main_config_boots_and_probes_a_thp(main_run) -> None:  # type: ignore[no-untyped-def]
    results, proc = main_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data, meta = latest(results)
    assert data["verdict"] == "pass"
    assert data["kernel"]["version"] == "6.1.192"
    assert data["machine"]["outcome"] == "done"
    assert data["machine"]["cpus_seen"] == 2  # ACPI in the base fragment honours -smp
    sc = next(s for s in data["scenarios"] if s["name"] == "anon-thp-munmap-half")
    whole = next(p for p in sc["probes"] if p["label"] == "whole")
    pages = whole["pages"]
    assert len(pages) == 512
    assert {p["head_pfn"] for p in pages} == {pages[0]["pfn"]}
    assert {p["order"] for p in pages} == {9}
    assert {p["page_mapcount"] for p in pages} == {1}
    assert whole["vmas"][0]["anon_huge_kb"] == 2048  # PMD-mapped
    half = next(p for p in sc["probes"] if p["label"] == "first-half")
    assert len(half["pages"]) == 256
    assert {p["page_mapcount"] for p in half["pages"]} == {1}
    assert half["vmas"][0]["pmd_mapped_kb"] == 0  # PTE-mapped now
    # Every phase is timed, and the inputs are identified.
    assert {"source", "build", "guest", "accel", "boot", "compare"} <= set(meta["phase_seconds"])
    assert meta["inputs"]["config"]["sha256"]
    assert "qemu-system-x86_64" in meta["qemu_command"]
    for phase in ("source:", "build:", "boot:", "compare:", "verdict: PASS", "reproduce:"):
        assert phase in proc.stdout
    assert (results / "latest" / "console.log").stat().st_size > 0


def test_fault_around_and_lifecycle_scenarios_on_the_unpatched_kernel(main_run) -> None:  # type: ignore[no-untyped-def]
    results, _ = main_run
    data, _ = latest(results)
    verdicts = {s["name"]: s for s in data["scenarios"]}
    fault_around = [n for n in verdicts if n.startswith("fa-") and not n.startswith("fa-whole")]
    assert len(fault_around) == 27
    assert all(verdicts[n]["verdict"] == "pass" for n in fault_around)
    # The whole-folio mode needs the series: skipped here, and the reason says so.
    whole = [s for n, s in verdicts.items() if n.startswith("fa-whole")]
    assert whole and all(s["verdict"] == "skipped" for s in whole)
    assert "fault_around_whole_folio" in whole[0]["reason"]
    # 64 KiB window, 1 MiB-misaligned THP: 16 pages mapped, then 16 more in the next table.
    sc = verdicts["fa-misaligned-1m-64k"]
    first, both = sc["probes"]
    assert sum(1 for p in first["pages"] if p["pfn"] is not None) == 16
    assert sum(1 for p in both["pages"] if p["pfn"] is not None) == 32
    # Deferred split at drop_caches is predicted, and so checked, not called environment.
    split = verdicts["deferred-split-after-fork-drop-caches"]
    assert split["verdict"] == "pass" and split["environment"] == []
    assert split["recalls"][0]["observed"] == "split"
    states = {r["label"]: r["observed"] for s in data["scenarios"] for r in s["recalls"]
              if not s["name"].startswith("fuzz-")}  # fmt: skip
    reused = verdicts["fuzz-freed-page-handed-out-again"]
    assert reused["verdict"] == "pass" and reused["recalls"][0]["observed"] == "mapped elsewhere"
    assert states == {
        "head-after-split": "split", "gone": "freed", "cached": "cached",
        "still-cached": "cached", "after-child-exit": "mapped", "punched": "freed",
        "split": "split", "head": "split",
    }  # fmt: skip
    assert not [s["name"] for s in data["scenarios"] if s["verdict"] == "environment"]


def test_running_out_of_guest_memory_is_environment_with_a_hint(tmp_path: Path, main_run) -> None:  # type: ignore[no-untyped-def]
    proc = harness("run", "--config", "configs/limits.yaml", results=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data, _ = latest(tmp_path)
    (sc,) = data["scenarios"]
    assert sc["verdict"] == "environment"
    assert "ENOMEM" in sc["reason"] and "raise machine.memory" in sc["reason"]
    # 512 absent 4K folios are one line of the diff, not 512 blocks.
    diff = (tmp_path / "latest" / "diff.txt").read_text()
    assert "512 folios at 0x100000000000-0x100000200000 (512 pages): none present" in diff
    assert data["verdict"] == "environment"
    assert len(diff.splitlines()) < 20


def test_whole_folio_fault_around_on_the_series_kernel(tmp_path: Path) -> None:
    on = harness("run", "--config", str(DATA / "whole-folio-debug.yaml"), results=tmp_path)
    assert on.returncode == 0, on.stdout[-3000:] + on.stderr
    data, meta = latest(tmp_path)
    assert meta["setup_override"] == {"fault_around_whole_folio": True}
    assert data["splats"] == []
    verdicts = {s["name"]: s["verdict"] for s in data["scenarios"]}
    assert set(verdicts.values()) == {"pass"}
    sc = next(s for s in data["scenarios"] if s["name"] == "fa-misaligned-1m-64k")
    first, both = sc["probes"]
    # Whole-folio: every page of the THP in the faulting page table, not 16 of them.
    assert sum(1 for p in first["pages"] if p["pfn"] is not None) == 256
    assert sum(1 for p in both["pages"] if p["pfn"] is not None) == 512
    on_stats = data["rmap_stats"]["add_file_pte"]
    off = harness("run", "--config", str(DATA / "window-off-debug.yaml"), results=tmp_path)
    assert off.returncode == 0, off.stdout[-3000:]
    off_stats = latest(tmp_path)[0]["rmap_stats"]["add_file_pte"]
    # The point of the mode: fewer rmap calls per mapped page.
    assert on_stats["pages"] / on_stats["calls"] > off_stats["pages"] / off_stats["calls"]


def test_a_whole_folio_window_one_page_past_the_vma_end_is_caught(tmp_path: Path) -> None:
    series = tmp_path / "series-dir"
    series.mkdir()
    names = [line.split()[0] for line in (ROOT / "kernel-patches" / "series").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]  # fmt: skip
    planted = next((DATA / "planted").glob("0099-*.patch"))
    for name in names:
        (series / name).write_bytes((ROOT / "kernel-patches" / name).read_bytes())
    (series / planted.name).write_bytes(planted.read_bytes())
    (series / "series").write_text("\n".join([*names, planted.name]) + "\n")
    config = tmp_path / "planted.yaml"
    frags = ", ".join(
        str(ROOT / "configs" / "kconfig" / f) for f in ("base.config", "mm-debug.config",
                                                        "series.config")
    )  # fmt: skip
    config.write_text(
        f"kernel:\n  series: {series / 'series'}\n  fragments: [{frags}]\n"
        f"workloads: [{DATA / 'planted' / 'vma-ends-inside.yaml'}]\n"
    )
    proc = harness("run", "--config", str(config), results=tmp_path)
    assert proc.returncode in (1, 2), proc.stdout[-3000:]
    data, _ = latest(tmp_path)
    (sc,) = data["scenarios"]
    assert sc["verdict"] in ("fail", "error")
    # The kernel's T counts the page mapped past vm_end: 257 where 256 are in the VMA.
    diff = (tmp_path / "latest" / "diff.txt").read_text()
    assert "T: expected 256, observed 257" in diff or data["splats"], diff


def test_second_identical_run_compiles_nothing(main_run) -> None:  # type: ignore[no-untyped-def]
    results, first = main_run
    assert first.returncode == 0
    proc = harness("run", "--config", "configs/thp.yaml", results=results)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data, meta = latest(results)
    assert data["kernel"]["cached"] is True
    assert "make" not in meta["build"]["seconds"]
    assert "cached, no make" in proc.stdout


def test_kernel_panic_at_boot_is_an_error_and_leaves_no_qemu(tmp_path: Path, main_run) -> None:  # type: ignore[no-untyped-def]
    proc = harness("run", "--config", str(DATA / "panic-at-boot.yaml"), results=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    data, _ = latest(tmp_path)
    assert data["verdict"] == "error"
    assert "kernel panic during boot" in data["error"]
    assert data["splats"][0]["kind"] == "panic"
    assert data["scenarios"][0]["verdict"] == "error"
    assert not qemu_processes(str(tmp_path))


def test_patch_that_does_not_apply_stops_the_run(tmp_path: Path) -> None:
    proc = harness("run", "--config", str(DATA / "bad-series.yaml"), results=tmp_path)
    assert proc.returncode == 2
    assert "0001-mm-does-not-apply.patch: does not apply" in proc.stdout
    assert "mm/memory.c" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_config_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("machine:\n  cpus: 2\n  acel: kvm\n")
    proc = harness("run", "--config", str(bad), results=tmp_path)
    assert proc.returncode == 2
    assert f"{bad}:3 (key 'machine.acel'): unknown key 'acel'" in proc.stderr
    assert "Traceback" not in proc.stderr


def processes_with_mark(mark: str) -> list[str]:
    """Command lines of live processes whose environment carries `mark` (our descendants)."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            if mark.encode() in (proc_dir / "environ").read_bytes():
                found.append((proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def _interrupt_when(argv: list[str], ready: str, results: Path, delay: float) -> tuple[int, str]:
    """Start argv, send SIGINT (as Ctrl-C would) `delay` s after `ready` appears.

    Every descendant inherits FOLIO_TEST_MARK, so orphans can be found afterwards even
    though the harness starts make and QEMU in sessions of their own.
    """
    env = {**os.environ, "FOLIO_TEST_MARK": str(results)}
    child = subprocess.Popen(
        [*HARNESS, "--results", str(results), *argv], cwd=ROOT, text=True, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(line)
        if ready in line:
            break
    time.sleep(delay)
    os.killpg(child.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    rest, _ = child.communicate(timeout=120)
    return child.returncode, "".join(seen) + rest


def test_ctrl_c_during_boot_leaves_no_qemu(tmp_path: Path, main_run) -> None:  # type: ignore[no-untyped-def]
    code, out = _interrupt_when(
        ["boot", "--config", "configs/smoke.yaml", "--", "sleep 60"],
        "accel:", tmp_path, 3.0,
    )  # fmt: skip
    assert code == 130, out
    time.sleep(1)
    assert not processes_with_mark(str(tmp_path)), out
    assert not qemu_processes(str(tmp_path)), out


def test_ctrl_c_during_build_leaves_no_orphan_and_a_usable_cache(tmp_path: Path, main_run) -> None:  # type: ignore[no-untyped-def]
    # --force runs make even though the kernel is cached (the main run built it), so
    # Ctrl-C lands in a real make on any machine, warm or cold.
    smoke = "configs/smoke.yaml"
    code, out = _interrupt_when(["build", "--force", "--config", smoke], "build: baseline",
                                tmp_path, 3.0)  # fmt: skip
    assert code == 130, out
    assert "interrupted" in out
    time.sleep(1)
    assert not processes_with_mark(str(tmp_path)), out  # no make, no cc1 left behind
    # The cached kernel is intact and the build directory still builds.
    cached = harness("build", "--config", smoke, results=tmp_path)
    assert cached.returncode == 0 and "cached, no make" in cached.stdout
    rebuilt = harness("build", "--force", "--config", smoke, results=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert Path(rebuilt.stdout.strip().splitlines()[-1]).name == "bzImage"
