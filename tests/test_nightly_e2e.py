"""End to end: nights of real cells (QEMU, the unpatched kernel the suite already builds), here and
over two real OpenSSH servers on 127.0.0.1, one of which is killed in the middle of a cell.

The sshd instances are started by these tests (tests/sshd.py): own host key, config and
authorized key each, on free loopback ports. Their work directories persist under
~/.cache/folio-harness-tests/nightly-hosts/ so a warm run does not rebuild their .venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sshd
import yaml
from conftest import needs_kernel_tools

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "nightly"
HARNESS = [sys.executable, "-m", "harness.cli"]
HOST_WORKDIRS = Path.home() / ".cache" / "folio-harness-tests" / "nightly-hosts"

pytestmark = [pytest.mark.e2e, needs_kernel_tools]
needs_sshd = pytest.mark.skipif(sshd.available() is not None, reason=str(sshd.available()))


def nightly(results: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, "--results", str(results), "nightly", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def summary_of(results: Path, night: str) -> dict:  # type: ignore[type-arg]
    return json.loads((results / "nightly" / night / "summary.json").read_text())


def run_verdict(cell_dir: Path, attempt: int = 1) -> dict:  # type: ignore[type-arg]
    return json.loads((cell_dir / f"attempt-{attempt}" / "results" / "latest" / "results.json")
                      .read_text())  # fmt: skip


def test_a_local_night_and_a_second_night_compared_with_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    first = nightly(results, "--matrix", str(DATA / "quick.yaml"), "--jobs", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    (night1,) = [p.name for p in (results / "nightly").iterdir()]
    summary = summary_of(results, night1)
    assert summary["mode"] == "local" and summary["jobs"] == min(2, os.cpu_count() or 1)
    assert {n: c["status"] for n, c in summary["cells"].items()} == {
        "thp-pmd": "pass", "thp-never": "pass"}  # fmt: skip
    assert summary["previous"] is None and summary["comparison"]["new_failures"] == []
    cells = results / "nightly" / night1 / "cells"
    # The THP knob override reached the guest: one 2 MiB folio with the defaults, none with
    # enabled=never, and the model agreed both times.
    for name, orders in (("thp-pmd", {9}), ("thp-never", {0})):
        verdict = run_verdict(cells / name)
        assert verdict["verdict"] == "pass"
        (scenario,) = verdict["scenarios"]
        assert scenario["name"] == "anon-thp-pmd"
        folios = [f for p in scenario["probes"] for f in p["folios"]]
        assert {f["observed"]["order"] for f in folios} == orders, name
    derived = next((cells / "thp-never" / "input" / "workloads").iterdir())
    assert yaml.safe_load(derived.read_text())["scenarios"][0]["setup"]["thp_enabled"] == "never"

    # The second night: thp-never cannot boot in time (a real error, retried once).
    second = nightly(results, "--matrix", str(DATA / "quick-regressed.yaml"), "--jobs", "2")
    assert second.returncode == 1, second.stdout + second.stderr
    summary = summary_of(results, f"{night1}.2")
    assert summary["previous"] == night1
    broken = summary["cells"]["thp-never"]
    assert broken["status"] == "error" and broken["exits"] == [2, 2]
    assert summary["comparison"] == {
        "new_failures": ["thp-never"], "fixed": [], "still_failing": [], "flaky": []}  # fmt: skip
    assert "new failures: thp-never" in second.stdout


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[list[sshd.SshdHost], Path]]:
    hosts = [sshd.SshdHost(name, tmp_path / f"sshd-{name}", HOST_WORKDIRS / name)
             for name in ("a", "b")]  # fmt: skip
    for h in hosts:  # cells an earlier run left there (a killed host keeps its copy)
        shutil.rmtree(h.workdir / "cells", ignore_errors=True)
    try:
        for h in hosts:
            h.start()
        hosts_file = tmp_path / "hosts.yaml"
        hosts_file.write_text(yaml.safe_dump({"hosts": [h.hosts_entry() for h in hosts]}))
        yield hosts, hosts_file
    finally:
        for h in hosts:
            h.stop()


def processes_under(workdir: Path) -> list[str]:
    """Processes whose command line names the host's work directory (the cell's runners)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(workdir) in cmdline or cwd.startswith(str(workdir)):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


@needs_sshd
def test_a_night_over_two_ssh_hosts(tmp_path: Path, two_hosts) -> None:  # type: ignore[no-untyped-def]
    _, hosts_file = two_hosts
    results = tmp_path / "results"
    proc = nightly(results, "--matrix", str(DATA / "quick.yaml"), "--hosts", str(hosts_file),
                   "--night", "2026-12-01")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = summary_of(results, "2026-12-01")
    assert summary["mode"] == "ssh" and summary["hosts"] == {"a": None, "b": None}
    cells = summary["cells"]
    assert {c["status"] for c in cells.values()} == {"pass"}
    # Two cells, two hosts with one slot each: each host ran one.
    assert sorted(c["ran_on"] for c in cells.values()) == ["a", "b"]
    for name, cell in cells.items():
        cell_dir = results / "nightly" / "2026-12-01" / "cells" / name
        record = json.loads((cell_dir / "cell.json").read_text())
        assert record["status"] == "pass" and record["attempts"][0]["exit"] == 0
        assert run_verdict(cell_dir)["verdict"] == "pass"
        # The cell ran in that host's copy of the project, not in this tree.
        config = (cell_dir / "attempt-1" / "results" / "latest" / "results.json")
        assert str(HOST_WORKDIRS / cell["ran_on"]) in json.loads(config.read_text())["config"]
        assert (results / "nightly" / "2026-12-01" / "logs" / f"{name}@{cell['ran_on']}.log"
                ).exists()  # fmt: skip


@needs_sshd
def test_a_host_killed_mid_cell_hands_the_cell_to_the_other(tmp_path: Path, two_hosts) -> None:  # type: ignore[no-untyped-def]
    hosts, hosts_file = two_hosts
    results = tmp_path / "results"
    night = results / "nightly" / "2026-12-02"
    argv = [*HARNESS, "--results", str(results), "nightly", "--matrix", str(DATA / "one.yaml"),
            "--hosts", str(hosts_file), "--night", "2026-12-02"]  # fmt: skip
    with (tmp_path / "night.log").open("w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            # Wait until a host has the cell and its guest is booting, then kill that host.
            victim = None
            deadline = time.monotonic() + 600
            while victim is None and time.monotonic() < deadline and proc.poll() is None:
                for h in hosts:
                    remote = h.workdir / "cells" / "2026-12-02" / "thp-pmd" / "attempt-1"
                    output = remote / "output.log"
                    if output.exists() and "boot:" in output.read_text():
                        victim = h
                time.sleep(0.5)
            assert victim is not None, (tmp_path / "night.log").read_text()
            victim.kill()
            code = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = (tmp_path / "night.log").read_text()
    assert code == 0, text
    survivor = next(h for h in hosts if h is not victim)
    summary = json.loads((night / "summary.json").read_text())
    cell = summary["cells"]["thp-pmd"]
    assert cell["status"] == "pass" and cell["ran_on"] == survivor.name, text
    assert [f["host"] for f in cell["host_failures"]] == [victim.name]
    assert summary["hosts"][victim.name] and summary["hosts"][survivor.name] is None
    assert run_verdict(night / "cells" / "thp-pmd")["verdict"] == "pass"
    assert f"host {victim.name} failed" in text and "goes back in the queue" in text
    # Nothing the dead host ran lives on (its sessions were killed with it).
    time.sleep(2)
    assert processes_under(victim.workdir) == []


def test_a_stopped_night_keeps_its_partial_results(tmp_path: Path) -> None:
    """SIGTERM to the night alone (a cancelled CI job) reaches the running cell and its QEMU."""
    results = tmp_path / "results"
    night = results / "nightly" / "stopped"
    argv = [*HARNESS, "--results", str(results), "nightly", "--matrix", str(DATA / "one.yaml"),
            "--night", "stopped"]  # fmt: skip
    with (tmp_path / "night.log").open("w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            output = night / "cells" / "thp-pmd" / "attempt-1" / "output.log"
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and proc.poll() is None:
                if output.exists() and "boot:" in output.read_text():
                    break
                time.sleep(0.5)
            proc.terminate()
            code = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = (tmp_path / "night.log").read_text()
    assert code == 130, text
    summary = json.loads((night / "summary.json").read_text())
    assert summary["exit"] == 130 and summary["cells"]["thp-pmd"]["status"] == "interrupted"
    assert run_verdict(night / "cells" / "thp-pmd")["error"] == "interrupted"
    assert processes_under(night) == []
