"""harness nightly: the matrix's cells run here or over SSH, merged into a night with history.

Three ways to run a night, one cell runner:
  here       `harness nightly` runs the cells N at a time (bounded by cores and memory)
  SSH        `harness nightly --hosts FILE` bootstraps each host and gives it cells; a host that
             fails mid-cell is dropped and its cell goes to another host
  CI         `--emit github-matrix|gitlab` prints the cells, each CI job runs `--cell NAME`, and
             `--merge DIR...` turns their directories into a night
Every cell is run by `harness nightly --cell NAME` (here, on a host, or in a CI job), which
re-runs a failing cell up to K times: passing on a retry is "flaky", reported apart. A night is
results/nightly/<date>/ with cells/<name>/ and summary.json, compared with the previous
night: new failures, fixed, still failing, flaky. Exit 0 without new failures, 1 with.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from harness import report
from harness.campaign import hosts as hostlib
from harness.campaign import matrix as matrixlib
from harness.errors import ConfigError, HarnessError

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_MATRIX = PROJECT_ROOT / "configs" / "nightly.yaml"
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
# A cell's status -> its runner's exit status.
STATUS_EXIT = {"pass": 0, "flaky": 0, "fail": 1, "error": 2, "interrupted": 130}
FAILING = frozenset({"fail", "error", "not-run", "interrupted"})
NIGHT_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.(\d+))?$")
HARNESS = [sys.executable, "-m", "harness.cli"]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# --- one cell: harness nightly --cell NAME -----------------------------------------------------


def _command_exists(command: str) -> bool:
    """Whether this harness has the subcommand (fuzz and mutate arrive on their own)."""
    probe = subprocess.run([*HARNESS, command, "--help"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=False)  # fmt: skip
    return probe.returncode == 0


def _verdict(results_root: Path) -> dict[str, Any]:
    """The run's verdict, error and failing scenarios or tests, from its results.json."""
    path = results_root / "latest" / "results.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"verdict": "error", "error": f"{path} is unreadable"}
    # A skipped scenario (a knob this kernel lacks) is not failing: a PASS cell lists none.
    failing = [s["name"] for s in data.get("scenarios") or []
               if s.get("verdict") not in ("pass", "skipped")]  # fmt: skip
    st = data.get("selftests") or {}
    if "regressions" in st:
        failing += list(st["regressions"])
    else:
        failing += [t["name"] for t in st.get("table") or []
                    if t.get("outcome") not in (None, "pass", "skip")]  # fmt: skip
    return {"verdict": data.get("verdict"), "error": data.get("error"), "failing": failing,
            "run_dir": str(Path(data.get("run_id") or "").name)}  # fmt: skip


def _attempt(argv: list[str], attempt_dir: Path, stream: TextIO) -> int:
    """One run of the cell's harness command; its output to attempt_dir/output.log and stream."""
    attempt_dir.mkdir(parents=True, exist_ok=True)
    command = [*HARNESS, "--results", str(attempt_dir / "results"), *argv]
    with (attempt_dir / "output.log").open("w") as log:
        child = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, bufsize=1)  # fmt: skip
        assert child.stdout is not None

        def copy_output() -> None:
            for line in child.stdout:  # type: ignore[union-attr]
                log.write(line)
                log.flush()
                stream.write(line)
                stream.flush()

        try:
            copy_output()
            return child.wait()
        except KeyboardInterrupt:
            # From a terminal the child had the same SIGINT; when only this process was told
            # (a CI job cancelled, the night's orchestrator), pass it on. Either way the child
            # writes its partial results and says 130; its last lines say where they are.
            try:
                child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
            backstop = threading.Timer(60, child.kill)
            backstop.start()
            try:
                copy_output()
                return child.wait() or EXIT_INTERRUPTED
            finally:
                backstop.cancel()


def cell_status(exits: list[int]) -> str:
    """pass (first try), flaky (passed on a retry), fail, error, interrupted (the last try)."""
    if not exits:
        return "error"
    if exits[0] == 0:
        return "pass"
    if 0 in exits:
        return "flaky"
    last = exits[-1]
    return {EXIT_FAIL: "fail", EXIT_INTERRUPTED: "interrupted"}.get(last, "error")


def _clear_cell_dir(out: Path) -> None:
    """Remove what an earlier run of this cell left (only the entries a cell writes)."""
    if not out.exists():
        return
    for entry in out.iterdir():
        if entry.name in ("cell.json", "input") or entry.name.startswith("attempt-"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a cancelled CI job, a stopped orchestrator) stops a night like Ctrl-C does.

    SIGINT gets Python's handler back even if it was ignored (a night started in the
    background by a shell): the cells' runs inherit it and can then be stopped too.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_cell(matrix: matrixlib.Matrix, name: str, out: Path, retries: int | None = None,
             budget: str | None = None, stream: TextIO | None = None) -> int:  # fmt: skip
    """Run one cell with its retries into `out` (cell.json, input/, attempt-N/); its status."""
    stream = stream or sys.stdout
    _interrupt_on_sigterm()
    cell = matrix.cell(name)
    retries = matrix.retries if retries is None else retries
    if cell.campaign is not None:
        # A campaign is seeded: another attempt spends its whole budget to find the same
        # workloads again, and what it found is saved, shrunk, in the first attempt.
        retries = 0
    out.mkdir(parents=True, exist_ok=True)
    _clear_cell_dir(out)
    record: dict[str, Any] = {
        "cell": name, "matrix": str(matrix.path), "config": str(cell.config),
        "retries": retries, "host": socket.gethostname(), "started": _now(),
        "command": None, "status": None, "error": None, "attempts": [],
    }  # fmt: skip

    def save(status: str | None) -> int:
        record["status"] = status
        record["finished"] = _now()
        report.write_json(out / "cell.json", record)
        return STATUS_EXIT.get(status or "error", EXIT_ERROR)

    try:
        argv = matrixlib.prepare(cell, out / "input", budget)
    except HarnessError as exc:
        record["error"] = str(exc)
        stream.write(f"cell {name}: error: {exc}\n")
        return save("error")
    record["command"] = ["harness", *argv]
    if not _command_exists(argv[0]):
        record["error"] = (
            f"this harness has no '{argv[0]}' command (harness {argv[0]} --help fails): "
            f"cell {name} cannot run until it is merged; {cell.where} asks for it"
        )
        stream.write(f"cell {name}: error: {record['error']}\n")
        return save("error")
    exits: list[int] = []
    for n in range(1, retries + 2):
        stream.write(f"cell {name}: attempt {n}/{retries + 1}: harness {' '.join(argv)}\n")
        stream.flush()
        started = time.monotonic()
        code = _attempt(argv, out / f"attempt-{n}", stream)
        exits.append(code)
        record["attempts"].append({
            "n": n, "exit": code, "seconds": round(time.monotonic() - started, 1),
            "dir": f"attempt-{n}", **_verdict(out / f"attempt-{n}" / "results"),
        })  # fmt: skip
        save(None)  # progress, for whoever watches the directory
        if code in (EXIT_PASS, EXIT_INTERRUPTED):
            break
    return save(cell_status(exits))


# --- a night: where the cells run ----------------------------------------------------------


@dataclass
class Outcome:
    """What the scheduler knows about a cell, beside its cell.json."""

    ran_on: str | None = None
    exit: int | None = None
    seconds: float = 0.0
    host_failures: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None


class CellQueue:
    """Cells waiting to run; a cell taken by a host that dies goes back in."""

    def __init__(self, names: list[str]) -> None:
        self._waiting = list(names)
        self._running = 0
        self._cond = threading.Condition()
        self.stopped = False

    def take(self) -> str | None:
        """The next cell, or None when none is left and none can come back."""
        with self._cond:
            while not self._waiting and self._running and not self.stopped:
                self._cond.wait()
            if self.stopped or not self._waiting:
                return None
            self._running += 1
            return self._waiting.pop(0)

    def done(self, name: str) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def give_back(self, name: str) -> None:
        with self._cond:
            self._running -= 1
            self._waiting.insert(0, name)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def left(self) -> list[str]:
        with self._cond:
            return list(self._waiting)


class MemoryBudget:
    """Start a cell only when its memory fits beside the running ones (one always may run)."""

    def __init__(self, total_mb: int) -> None:
        self.total_mb = total_mb
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, mb: int) -> None:
        with self._cond:
            while self._used and self._used + mb > self.total_mb:
                self._cond.wait()
            self._used += mb

    def release(self, mb: int) -> None:
        with self._cond:
            self._used -= mb
            self._cond.notify_all()


def available_memory_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 2048


def local_slots(jobs: int) -> int:
    return max(1, min(jobs, os.cpu_count() or 1))


@dataclass
class Night:
    matrix: matrixlib.Matrix
    directory: Path
    retries: int
    budget: str | None
    log: Callable[[str], None]
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    hosts: dict[str, str | None] = field(default_factory=dict)  # host -> why it was dropped

    def cell_args(self) -> list[str]:
        extra = ["--retries", str(self.retries)]
        return extra + (["--budget", self.budget] if self.budget else [])

    def logs(self) -> Path:
        path = self.directory / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path


def expected_seconds(night: Night) -> dict[str, float]:
    """How long each cell should take: its campaign budget, or what it took the last night
    that ran it; 0 when nothing says."""
    previous = previous_night(night.directory.parent, night.directory.name)
    last = (previous[1].get("cells") or {}) if previous else {}
    expected: dict[str, float] = {}
    for cell in night.matrix.cells:
        took = (last.get(cell.name) or {}).get("seconds") or 0
        budget = 0
        if cell.campaign is not None:
            with contextlib.suppress(ValueError):  # a bad --budget is reported where it is used
                budget = matrixlib.duration_seconds(night.budget or cell.campaign.time)
        expected[cell.name] = max(float(took), float(budget))
    return expected


def longest_first(night: Night) -> list[str]:
    """The cells in the order to start them: longest first, so that the night ends when its
    longest cell does, not when a 30-minute fuzz started last does (ties: matrix order)."""
    expected = expected_seconds(night)
    return sorted(expected, key=lambda name: -expected[name])


def _run_local(night: Night, jobs: int) -> None:
    cells = {c.name: c for c in night.matrix.cells}
    queue = CellQueue(longest_first(night))
    budget = MemoryBudget(available_memory_mb())
    slots = local_slots(jobs)
    night.log(f"local: {slots} cell(s) at a time, {budget.total_mb} MiB of memory available")
    running: dict[str, subprocess.Popen[str]] = {}

    def interrupt() -> None:
        for child in list(running.values()):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)

    def worker() -> None:
        while (name := queue.take()) is not None:
            need = cells[name].host_memory_mb
            budget.acquire(need)
            outcome = night.outcomes.setdefault(name, Outcome())
            outcome.ran_on = "local"
            night.log(f"cell {name}: start (local)")
            started = time.monotonic()
            log_path = night.logs() / f"{name}@local.log"
            command = [*HARNESS, "nightly", "--matrix", str(night.matrix.path), "--cell", name,
                       "--out", str(night.directory / "cells" / name), *night.cell_args()]
            try:
                with log_path.open("w") as log:
                    child = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log,
                                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
                    running[name] = child
                    outcome.exit = child.wait()
            finally:
                running.pop(name, None)
                budget.release(need)
            outcome.seconds = round(time.monotonic() - started, 1)
            if outcome.exit not in STATUS_EXIT.values():
                outcome.error = f"the cell runner ended with status {outcome.exit}; see {log_path}"
            _say_done(night, name, outcome)
            queue.done(name)

    _run_workers(night, queue, [worker] * slots, interrupt)


def _run_ssh(night: Night, specs: list[hostlib.HostSpec]) -> None:
    try:
        matrix_rel = night.matrix.path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        raise ConfigError(
            f"{night.matrix.path}: over SSH the matrix is read from the project's copy on each "
            f"host: keep it under {PROJECT_ROOT}"
        ) from None
    hosts = [hostlib.Host(spec) for spec in specs]
    names = ", ".join(f"{h.name} ({h.spec.host}:{h.spec.port})" for h in hosts)
    night.log(f"ssh: bootstrapping {names}")
    hostlib.bootstrap(hosts, PROJECT_ROOT, night.log)
    for host in hosts:
        if host.dead:
            night.log(f"host {host.name}: not used tonight: {host.dead}")
    queue = CellQueue(longest_first(night))

    def worker(host: hostlib.Host) -> Callable[[], None]:
        def loop() -> None:
            while host.dead is None and (name := queue.take()) is not None:
                outcome = night.outcomes.setdefault(name, Outcome())
                night.log(f"cell {name}: start on {host.name}")
                started = time.monotonic()
                try:
                    code = hostlib.run_cell(
                        host, name, matrix_rel, night.directory.name, night.cell_args(),
                        night.directory / "cells" / name, night.logs() / f"{name}@{host.name}.log",
                    )  # fmt: skip
                except hostlib.HostError as exc:
                    with host.lock:
                        host.dead = host.dead or str(exc)
                    outcome.host_failures.append({"host": host.name, "error": str(exc)})
                    night.log(f"cell {name}: host {host.name} failed ({exc}); cell goes back "
                              "in the queue")  # fmt: skip
                    host.close()
                    queue.give_back(name)
                    return
                outcome.ran_on, outcome.exit = host.name, code
                outcome.seconds = round(time.monotonic() - started, 1)
                _say_done(night, name, outcome)
                queue.done(name)

        return loop

    workers = [worker(h) for h in hosts if h.dead is None for _ in range(h.spec.jobs)]
    try:
        _run_workers(night, queue, workers)
    finally:
        for host in hosts:
            host.close()
        night.hosts = {h.name: h.dead for h in hosts}  # an interrupted night says it too
    # No cell lost silently: what is still queued had no host left to run it.
    reasons = "; ".join(f"{h.name}: {h.dead}" for h in hosts if h.dead)
    for name in queue.left():
        night.outcomes.setdefault(name, Outcome()).error = f"no host left to run it ({reasons})"


def _run_workers(night: Night, queue: CellQueue, workers: list[Callable[[], None]],
                 interrupt: Callable[[], None] | None = None) -> None:  # fmt: skip
    # Each worker says it is done through an Event, not Thread.join(): a KeyboardInterrupt
    # that lands inside join() can leave the thread looking finished (CPython 3.11).
    finished = [threading.Event() for _ in workers]

    def wrap(work: Callable[[], None], done: threading.Event) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            finally:
                done.set()

        return run

    for work, done in zip(workers, finished, strict=True):
        threading.Thread(target=wrap(work, done), daemon=True).start()
    try:
        while not all(done.is_set() for done in finished):
            next(d for d in finished if not d.is_set()).wait(timeout=0.5)
    except KeyboardInterrupt:
        queue.stop()
        night.log("interrupted: waiting for the running cells to write their partial results")
        if interrupt is not None:
            interrupt()
        deadline = time.monotonic() + 120
        for done in finished:
            done.wait(timeout=max(0.0, deadline - time.monotonic()))
        raise


def _say_done(night: Night, name: str, outcome: Outcome) -> None:
    record = _cell_record(night.directory / "cells" / name)
    status = (record or {}).get("status") or "error"
    night.log(f"cell {name}: {status.upper()} on {outcome.ran_on} in {outcome.seconds:.0f}s")


# --- a night: results and history -----------------------------------------------------------


def _cell_record(cell_dir: Path) -> dict[str, Any] | None:
    path = cell_dir / "cell.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return None


def night_key(name: str) -> tuple[str, int]:
    match = NIGHT_NAME.match(name)
    return (match.group(1), int(match.group(2) or 1)) if match else (name, 0)


def new_night_dir(nightly_root: Path, name: str | None = None) -> Path:
    """results/nightly/<date>/, or <date>.2, .3 for more nights on one date."""
    nightly_root.mkdir(parents=True, exist_ok=True)
    if name is not None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
            raise ConfigError(f"--night {name!r}: use letters, digits, '.', '_' and '-' only")
        path = nightly_root / name
        if (path / "summary.json").exists():
            raise ConfigError(f"{path} already holds a night (summary.json); pick another --night")
        path.mkdir(exist_ok=True)
        return path
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    n = 1
    while True:
        path = nightly_root / (date if n == 1 else f"{date}.{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def previous_night(nightly_root: Path, current: str) -> tuple[str, dict[str, Any]] | None:
    """The latest night before `current` that has a summary.json."""
    nights = []
    for path in nightly_root.iterdir() if nightly_root.exists() else []:
        earlier = night_key(path.name) < night_key(current)
        if path.name != current and earlier and (path / "summary.json").exists():
            nights.append(path)
    for path in sorted(nights, key=lambda p: night_key(p.name), reverse=True):
        try:
            return path.name, dict(json.loads((path / "summary.json").read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return None


def compare_nights(
    current: dict[str, str], previous: dict[str, str] | None
) -> dict[str, list[str]]:
    """Cell statuses tonight against the previous night's (a cell new tonight had none)."""
    prev = previous or {}
    failing = {c for c, s in current.items() if s in FAILING}
    was_failing = {c for c, s in prev.items() if s in FAILING}
    return {
        "new_failures": [c for c in current if c in failing and c not in was_failing],
        "fixed": [c for c in current if c not in failing and c in was_failing],
        "still_failing": [c for c in current if c in failing and c in was_failing],
        "flaky": [c for c, s in current.items() if s == "flaky"],
    }


def summarise(night_dir: Path, matrix: matrixlib.Matrix, outcomes: dict[str, Outcome],
              meta: dict[str, Any], interrupted: bool = False) -> dict[str, Any]:  # fmt: skip
    """summary.json: every cell of the matrix (and any merged extra), compared with last night."""
    cells: dict[str, Any] = {}
    names = [c.name for c in matrix.cells]
    names += sorted(
        p.name for p in (night_dir / "cells").glob("*") if p.is_dir() and p.name not in names
    ) if (night_dir / "cells").exists() else []
    for name in names:
        outcome = outcomes.get(name, Outcome())
        record = _cell_record(night_dir / "cells" / name)
        entry: dict[str, Any] = {"dir": f"cells/{name}", "ran_on": outcome.ran_on,
                                 "host_failures": outcome.host_failures}  # fmt: skip
        if record is not None and record.get("status"):
            attempts = record.get("attempts") or []
            entry.update(
                status=record["status"], error=record.get("error") or outcome.error,
                command=record.get("command"), attempts=len(attempts),
                exits=[a["exit"] for a in attempts],
                seconds=round(sum(a.get("seconds", 0) for a in attempts), 1),
                failing=(attempts[-1].get("failing") or []) if attempts else [],
                ran_on=outcome.ran_on or record.get("host"),
            )  # fmt: skip
        else:
            why = outcome.error or ("interrupted before it finished" if interrupted else (
                "never ran: every host failed" if outcome.host_failures else "never ran"))
            if outcome.host_failures:
                why += "; host failures: " + "; ".join(
                    f"{f['host']}: {f['error']}" for f in outcome.host_failures)
            entry.update(status="interrupted" if interrupted else "not-run", error=why,
                         attempts=0, exits=[], failing=[])  # fmt: skip
        cells[name] = entry
    prev = previous_night(night_dir.parent, night_dir.name)
    statuses = {n: c["status"] for n, c in cells.items()}
    comparison = compare_nights(statuses, (
        {n: c["status"] for n, c in prev[1].get("cells", {}).items()} if prev else None))
    code = EXIT_INTERRUPTED if interrupted else (EXIT_FAIL if comparison["new_failures"] else 0)
    return {
        "night": night_dir.name, **meta, "matrix": str(matrix.path), "retries": matrix.retries,
        "cells": cells, "previous": prev[0] if prev else None, "comparison": comparison,
        "exit": code,
    }  # fmt: skip


def format_summary(summary: dict[str, Any]) -> str:
    cells = summary["cells"]
    width = max([len(n) for n in cells] + [4])
    lines = [f"night {summary['night']}: {len(cells)} cells"
             + (f" in {summary['wall_seconds']:.0f}s" if "wall_seconds" in summary else "")
             + f" (previous night: {summary['previous'] or 'none'})"]  # fmt: skip
    for name, c in cells.items():
        tries = f"{c['attempts']} attempt{'s' if c['attempts'] != 1 else ''}"
        where = c.get("ran_on") or "-"
        extra = c.get("error") or (", ".join(c["failing"][:6]) if c.get("failing") else "")
        moved = len(c.get("host_failures") or [])
        moved_text = f" (moved after {moved} host failure(s))" if moved else ""
        lines.append(f"  {name:<{width}}  {c['status'].upper():<11} {tries:<10} {where:<10} "
                     f"{c.get('seconds', 0):>6.0f}s{moved_text}  {extra}".rstrip())  # fmt: skip
    comp = summary["comparison"]
    for key, label in (("new_failures", "new failures"), ("fixed", "fixed"),
                       ("still_failing", "still failing"), ("flaky", "flaky")):  # fmt: skip
        lines.append(f"{label}: {', '.join(comp[key]) or 'none'}")
    return "\n".join(lines)


def _finish(night_dir: Path, summary: dict[str, Any], out: TextIO) -> int:
    report.write_json(night_dir / "summary.json", summary)
    out.write(format_summary(summary) + "\n")
    out.write(f"summary: {night_dir / 'summary.json'}\n")
    out.flush()
    return int(summary["exit"])


def run_night(matrix: matrixlib.Matrix, results_root: Path, hosts_file: Path | None = None,
              jobs: int = 1, retries: int | None = None, budget: str | None = None,
              night_name: str | None = None, out: TextIO | None = None) -> int:  # fmt: skip
    out = out or sys.stdout
    _interrupt_on_sigterm()
    progress = report.Progress(out)
    specs = hostlib.load_hosts(hosts_file) if hosts_file else None  # bad file: before any work
    night_dir = new_night_dir(results_root / "nightly", night_name)
    (night_dir / "cells").mkdir(exist_ok=True)
    retries = matrix.retries if retries is None else retries
    night = Night(matrix, night_dir, retries, budget, progress.say)
    meta: dict[str, Any] = {"started": _now(), "mode": "ssh" if specs else "local",
                            "budget": budget, "command": ["harness", *sys.argv[1:]]}  # fmt: skip
    progress.say(f"night {night_dir}: {len(matrix.cells)} cells from {matrix.path}, "
                 f"up to {retries} retries each")  # fmt: skip
    interrupted = False
    try:
        if specs:
            _run_ssh(night, specs)
        else:
            meta["jobs"] = local_slots(jobs)
            _run_local(night, jobs)
    except KeyboardInterrupt:
        interrupted = True
    if specs:
        meta["hosts"] = night.hosts
    meta.update(finished=_now(), wall_seconds=round(progress.elapsed(), 1))
    summary = summarise(night_dir, matrix, night.outcomes, meta, interrupted)
    summary["retries"] = retries
    return _finish(night_dir, summary, out)


# --- CI: the cells as a CI matrix, and merging the jobs' directories -------------------------


def _matrix_arg(matrix: matrixlib.Matrix) -> str:
    try:
        return matrix.path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(matrix.path)


def emit(matrix: matrixlib.Matrix, form: str) -> str:
    names = [c.name for c in matrix.cells]
    if form == "github-matrix":
        # For `strategy.matrix: ${{ fromJSON(needs.plan.outputs.cells) }}`.
        return json.dumps({"cell": names})
    rel = _matrix_arg(matrix)
    pipeline = {
        "stages": ["cells", "merge"],
        # The runners configs/ci/gitlab-nightly.yml uses: Debian 12, root for setup.sh.
        "default": {"tags": ["debian-12"]},
        "nightly-cell": {
            "stage": "cells",
            "parallel": {"matrix": [{"CELL": names}]},
            "script": [
                "./scripts/setup.sh",
                f'.venv/bin/harness nightly --matrix {rel} --cell "$CELL" '
                '--out "results/nightly-cells/$CELL"',
            ],
            "artifacts": {"when": "always", "paths": ["results/nightly-cells/"]},
        },
        "nightly-merge": {
            "stage": "merge",
            "when": "always",
            "cache": {"key": "nightly-history", "paths": ["results/nightly/"]},
            "script": [
                "./scripts/setup.sh",
                f".venv/bin/harness nightly --matrix {rel} --merge results/nightly-cells",
            ],
            "artifacts": {"when": "always", "paths": ["results/nightly/"]},
        },
    }
    header = f"# Generated by `harness nightly --emit gitlab` from {rel}: one job per cell.\n"
    return header + yaml.safe_dump(pipeline, sort_keys=False)


def merge(matrix: matrixlib.Matrix, dirs: list[Path], results_root: Path,
          night_name: str | None = None, out: TextIO | None = None) -> int:  # fmt: skip
    """Cell directories from CI jobs (each DIR a cell, or a directory of cells) -> a night."""
    out = out or sys.stdout
    found: dict[str, Path] = {}
    for d in dirs:
        if (d / "cell.json").exists():
            candidates = [d]
        else:
            candidates = sorted(p.parent for p in d.glob("*/cell.json"))
            candidates += sorted(p.parent for p in d.glob("*/*/cell.json"))
        if not candidates:
            raise ConfigError(f"{d}: no cell.json in it or in its subdirectories: not a cell")
        for c in candidates:
            record = _cell_record(c)
            if record is None or "cell" not in record:
                raise ConfigError(f"{c / 'cell.json'}: unreadable cell record")
            name = str(record["cell"])
            if name in found:
                raise ConfigError(f"cell {name!r} is in both {found[name]} and {c}")
            found[name] = c
    night_dir = new_night_dir(results_root / "nightly", night_name)
    outcomes: dict[str, Outcome] = {}
    for name, src in found.items():
        shutil.copytree(src, night_dir / "cells" / name, symlinks=True)
        record = _cell_record(src) or {}
        outcomes[name] = Outcome(ran_on=str(record.get("host") or "ci"))
    for cell in matrix.cells:
        if cell.name not in found:
            outcomes[cell.name] = Outcome(error="no directory for this cell among the merged ones")
    meta = {"started": _now(), "mode": "merge", "merged": [str(d) for d in dirs]}
    summary = summarise(night_dir, matrix, outcomes, meta)
    return _finish(night_dir, summary, out)
