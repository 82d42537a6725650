"""Running host commands so that Ctrl-C never leaves an orphan behind.

Every child runs in its own process group; on any exit from `run` (error, timeout,
KeyboardInterrupt) the whole group is killed and reaped before the exception propagates.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from harness.errors import HarnessError


class CommandError(HarnessError):
    def __init__(self, argv: Sequence[str], returncode: int, output: str, log: Path | None):
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        self.log = log
        where = f"; full output in {log}" if log else ""
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(
            f"command failed with status {returncode}: {shlex.join(argv)}{where}\n{tail}"
        )


def kill_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL, the process group of `proc`, and reap it."""
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: IO[str] | None = None,
    log_path: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    input_text: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in its own process group, teeing stdout+stderr into `log` when given and
    handing each line to `on_line` as it comes (a progress bar)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if log is not None:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    chunks: list[str] = []
    try:
        if input_text is not None:
            assert proc.stdin is not None
            proc.stdin.write(input_text)
            proc.stdin.close()
        assert proc.stdout is not None
        for line in proc.stdout:
            chunks.append(line)
            if log is not None:
                log.write(line)
            if on_line is not None:
                on_line(line)
        proc.wait(timeout=timeout)
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if log is not None:
            log.flush()
    output = "".join(chunks)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, output, log_path)
    return subprocess.CompletedProcess(list(argv), proc.returncode, output, "")


def output_of(argv: Sequence[str], cwd: Path | None = None) -> str:
    """stdout of a short command that must succeed (git queries, tool versions)."""
    return run(argv, cwd=cwd).stdout.strip()
