"""The run orchestration with the machine replaced by a recorded boot (kunit.py's seam).

The kernel build is replaced by a fake artifact; the console and data channel come from a
real boot of tests/data/configs/one-scenario.yaml (tests/data/console/run-thp.log and
tests/data/records/run-thp.log).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import build, console, machine, run, runconfig

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"


class RecordedMachine:
    """Replays a captured console and data channel instead of booting QEMU."""

    def __init__(self, console_log: Path, data_log: Path, interrupt: bool = False) -> None:
        self.console_log = console_log
        self.data_log = data_log
        self.interrupt = interrupt
        self.requests: list[machine.BootRequest] = []

    def boot(self, request: machine.BootRequest, on_line: Any = None) -> machine.BootResult:
        self.requests.append(request)
        lines = self.console_log.read_text().splitlines()
        request.console_log.write_text("\n".join(lines) + "\n")
        if request.data_log is not None:
            request.data_log.write_text(self.data_log.read_text())
        if self.interrupt:
            raise KeyboardInterrupt
        parser = console.ConsoleParser()
        for line in lines:
            parser.feed(line)
            if on_line:
                on_line(line)
        outcome = "done" if parser.report.done else "exited"
        return machine.BootResult(parser.report, outcome, None, 1.0, machine.qemu_argv(request))


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FOLIO_HARNESS_CACHE", str(tmp_path / "cache"))
    bzimage = tmp_path / "bzImage"
    bzimage.write_bytes(b"not a kernel")

    def prepare_kernel(cfg, run_dir, phases, state=None, force=False, variant=None):  # type: ignore[no-untyped-def]
        if state is not None:
            state.kernel.update(version="6.1.192", cached=True)
        return build.BuildResult("fakekey", bzimage, bzimage, bzimage, True, "0" * 40, "c" * 64,
                                 "gcc", tmp_path, {})  # fmt: skip

    monkeypatch.setattr(run, "prepare_kernel", prepare_kernel)


def test_recorded_boot_gives_a_passing_results_tree(fake_kernel: None, tmp_path: Path) -> None:
    cfg = runconfig.load(DATA / "configs" / "one-scenario.yaml")
    vm = RecordedMachine(DATA / "console" / "run-thp.log", DATA / "records" / "run-thp.log")
    code = run.execute(cfg, tmp_path / "results", ["harness", "run"], machine_impl=vm)
    latest = tmp_path / "results" / "latest"
    results = json.loads((latest / "results.json").read_text())
    meta = json.loads((latest / "metadata.json").read_text())
    by_name = {s["name"]: s for s in results["scenarios"]}
    assert by_name["anon-thp-munmap-half"]["verdict"] == "pass", by_name["anon-thp-munmap-half"]
    assert code == run.EXIT_PASS and results["verdict"] == "pass"
    assert vm.requests[0].accel == "tcg" or vm.requests[0].accel == "kvm"
    assert "qemu-system-x86_64" in meta["qemu_command"]
    assert set(meta["phase_seconds"]) >= {"model", "guest", "accel", "boot", "compare"}
    assert (latest / "reproducer.sh").read_text().count("harness run --config") == 1


def test_interrupted_boot_keeps_logs_and_partial_results(fake_kernel: None, tmp_path: Path) -> None:
    cfg = runconfig.load(DATA / "configs" / "one-scenario.yaml")
    vm = RecordedMachine(DATA / "console" / "run-thp.log", DATA / "records" / "run-thp.log",
                         interrupt=True)  # fmt: skip
    code = run.execute(cfg, tmp_path / "results", ["harness", "run"], machine_impl=vm)
    latest = tmp_path / "results" / "latest"
    assert code == run.EXIT_INTERRUPTED
    results = json.loads((latest / "results.json").read_text())
    assert results["verdict"] == "error" and results["error"] == "interrupted"
    assert (latest / "console.log").stat().st_size > 0
    assert json.loads((latest / "metadata.json").read_text())["phase_seconds"]


def test_repeat_runs_n_times_and_the_reproducer_keeps_the_selection(
    fake_kernel: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = runconfig.select(
        runconfig.load(DATA / "configs" / "one-scenario.yaml"), ["anon-thp-*"], ["*-pmd"]
    )
    vm = RecordedMachine(DATA / "console" / "run-thp.log", DATA / "records" / "run-thp.log")
    results = tmp_path / "results"

    def body(*args: Any) -> int:
        return run._execute(*args[:3], vm)

    selection = ["--scenario", "anon-thp-*", "--exclude", "*-pmd"]
    code = run.execute_repeated(cfg, results, ["harness", "run"], 3, body=body, run_args=selection)
    assert code == run.EXIT_PASS
    assert len(vm.requests) == 3
    run_dirs = [d for d in results.iterdir() if d.is_dir() and not d.is_symlink()]
    assert len(run_dirs) == 3
    out = capsys.readouterr().out
    assert "== run 3 of 3" in out and "== 3 runs: 3 pass (pass pass pass)" in out
    assert "accel: accel:" not in out
    reproducer = (results / "latest" / "reproducer.sh").read_text().splitlines()[2]
    assert reproducer.endswith("run --config " + str(cfg.path) +
                               " --scenario 'anon-thp-*' --exclude '*-pmd'")  # fmt: skip
    command = reproducer.split()[0]
    assert command.endswith("/bin/harness") and Path(command).exists()  # the venv's harness


def test_repeat_status_is_the_worst_verdict(fake_kernel: None, tmp_path: Path) -> None:
    cfg = runconfig.load(DATA / "configs" / "one-scenario.yaml")
    codes = iter([run.EXIT_PASS, run.EXIT_FAIL, run.EXIT_PASS])
    assert run.execute_repeated(cfg, tmp_path, [], 3, body=lambda *a: next(codes)) == 1
    codes = iter([run.EXIT_FAIL, run.EXIT_ERROR])
    assert run.execute_repeated(cfg, tmp_path, [], 2, body=lambda *a: next(codes)) == 2
    codes = iter([run.EXIT_PASS, run.EXIT_INTERRUPTED, run.EXIT_PASS])
    assert run.execute_repeated(cfg, tmp_path, [], 3, body=lambda *a: next(codes)) == 130


def test_results_json_has_one_scenario_per_line(fake_kernel: None, tmp_path: Path) -> None:
    cfg = runconfig.load(DATA / "configs" / "one-scenario.yaml")
    vm = RecordedMachine(DATA / "console" / "run-thp.log", DATA / "records" / "run-thp.log")
    run.execute(cfg, tmp_path, ["harness", "run"], machine_impl=vm)
    text = (tmp_path / "latest" / "results.json").read_text()
    data = json.loads(text)
    lines = text.splitlines()
    assert lines[0] == "{" and lines[1] == ' "verdict": "pass",'
    (scenario_line,) = [line for line in lines if line.startswith('  {"name": ')]
    assert json.loads(scenario_line) == data["scenarios"][0]
