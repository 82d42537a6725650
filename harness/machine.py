"""The machine: QEMU x86-64 behind one seam, so tests can replace it with a recorded console.

ttyS0 is the console (kernel messages, /init's markers), driven with pexpect and copied byte
for byte to console.log. ttyS1 is the data channel: mmwork's records go to a file QEMU
writes, untouched by printk interleaving.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pexpect

from harness import cache, proc
from harness.console import ConsoleParser, ConsoleReport
from harness.errors import GuestError

QEMU = "qemu-system-x86_64"
KVM_PROBE_DEADLINE = 15.0  # seconds for a KVM guest to print its first kernel line
BASE_CMDLINE = (
    "console=ttyS0,115200 panic=-1 oops=panic softlockup_panic=1 printk.devkmsg=on "
    "nokaslr rdinit=/init"
)


@dataclass(frozen=True)
class BootRequest:
    kernel: Path
    initramfs: Path
    console_log: Path
    data_log: Path | None
    accel: str  # kvm or tcg (resolved)
    memory_mb: int
    cpus: int
    cmdline: str
    boot_timeout: float
    job_timeout: float
    jobs: tuple[str, ...] = ()


@dataclass
class BootResult:
    report: ConsoleReport
    outcome: str  # 'done' | 'panic' | 'timeout' | 'exited'
    timed_out_in: str | None = None  # 'boot' or a job name
    seconds: float = 0.0
    argv: list[str] = field(default_factory=list)


class Machine(Protocol):
    def boot(
        self, request: BootRequest, on_line: Callable[[str], None] | None = None
    ) -> BootResult: ...


def qemu_argv(request: BootRequest) -> list[str]:
    argv = [
        QEMU,
        "-nodefaults",
        "-no-reboot",
        "-display", "none",
        "-machine", "pc",
        "-accel", request.accel,
        "-m", str(request.memory_mb),
        "-smp", str(request.cpus),
        "-kernel", str(request.kernel),
        "-initrd", str(request.initramfs),
        "-append", f"{BASE_CMDLINE} {request.cmdline}".strip(),
        "-serial", "stdio",
    ]  # fmt: skip
    if request.data_log is not None:
        argv += ["-serial", f"file:{request.data_log}"]
    return argv


def shell_command(argv: list[str]) -> str:
    return shlex.join(argv)


class QemuMachine:
    """Boots QEMU under pexpect and enforces the boot and per-job deadlines."""

    SETTLE_AFTER_PANIC = 5.0  # seconds to keep reading the trace after a fatal splat

    def boot(
        self, request: BootRequest, on_line: Callable[[str], None] | None = None
    ) -> BootResult:
        argv = qemu_argv(request)
        parser = ConsoleParser()
        started = time.monotonic()
        request.console_log.parent.mkdir(parents=True, exist_ok=True)
        with request.console_log.open("wb") as log:
            child = pexpect.spawn(argv[0], argv[1:], timeout=None, echo=False)
            child.logfile_read = log
            try:
                outcome, where = self._drive(child, request, parser, on_line)
            finally:
                _terminate(child)
        return BootResult(parser.report, outcome, where, time.monotonic() - started, argv)

    def _drive(
        self,
        child: pexpect.spawn,
        request: BootRequest,
        parser: ConsoleParser,
        on_line: Callable[[str], None] | None,
    ) -> tuple[str, str | None]:
        report = parser.report
        # One mutable cell: the line reader re-reads it, and each phase moves it.
        deadline = [time.monotonic() + request.boot_timeout]
        phase: str | None = "boot"
        fatal_seen_at: float | None = None
        for line in _lines(child, lambda: deadline[0]):
            if line is None:  # deadline passed with no progress
                if fatal_seen_at is not None:
                    return "panic", phase
                return "timeout", phase
            parser.feed(line)
            if on_line is not None:
                on_line(line)
            if report.fatal is not None and fatal_seen_at is None:
                fatal_seen_at = time.monotonic()
                deadline[0] = fatal_seen_at + self.SETTLE_AFTER_PANIC
                continue
            if fatal_seen_at is not None:
                continue
            if report.done:
                phase = None
                deadline[0] = time.monotonic() + 30  # let poweroff finish
            elif report.current_job is not None and report.current_job != phase:
                phase = report.current_job
                deadline[0] = time.monotonic() + request.job_timeout
            elif report.booted and phase == "boot":
                phase = "init"
                deadline[0] = time.monotonic() + request.job_timeout
        if fatal_seen_at is not None:
            return "panic", phase
        return ("done" if report.done else "exited"), (None if report.done else phase)


def _lines(child: pexpect.spawn, deadline: Callable[[], float]) -> Iterator[str | None]:
    """Console lines as they come; None once the current deadline passes; ends at EOF."""
    pending = b""
    while True:
        remaining = deadline() - time.monotonic()
        if remaining <= 0:
            yield None
            return
        try:
            chunk = child.read_nonblocking(65536, timeout=min(remaining, 1.0))
        except pexpect.TIMEOUT:
            continue
        except pexpect.EOF:
            if pending:
                yield pending.decode(errors="replace")
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode(errors="replace")


def _terminate(child: pexpect.spawn) -> None:
    """Never leave a QEMU behind, whatever happened."""
    with contextlib.suppress(Exception):
        if child.isalive():
            child.terminate(force=True)
    with contextlib.suppress(Exception):
        child.close(force=True)


# --- acceleration ----------------------------------------------------------------------------


def _kvm_usable() -> bool:
    return os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)


def _host_key() -> str:
    qemu = proc.output_of([QEMU, "--version"]).splitlines()[0]
    return f"{platform.node()}|{platform.release()}|{qemu}"


def resolve_accel(wanted: str, kernel: Path, initramfs: Path, log_dir: Path) -> tuple[str, str]:
    """(accel, reason). 'auto' tries KVM once per host with a short deadline and remembers.

    Nested KVM can hang a guest right after the firmware ('Booting from ROM') without any
    error, so the probe boots the real kernel and requires its first line within
    KVM_PROBE_DEADLINE seconds; anything else falls back to TCG.
    """
    if wanted == "tcg":
        return "tcg", "requested"
    if wanted == "kvm":
        if not _kvm_usable():
            raise GuestError("accel: kvm requested but /dev/kvm is missing or not writable")
        return "kvm", "requested"
    if not _kvm_usable():
        return "tcg", "no usable /dev/kvm"
    memo_path = cache.root() / "accel.json"
    key = _host_key()
    with contextlib.suppress(ValueError, OSError):
        memo = json.loads(memo_path.read_text())
        if memo.get("host") == key:
            return str(memo["accel"]), f"remembered: {memo['reason']}"
    accel, reason, conclusive = _probe_kvm(kernel, initramfs, log_dir)
    if conclusive:  # a QEMU that exited early says more about the kernel than about KVM
        cache.write_atomic(memo_path, json.dumps({"host": key, "accel": accel, "reason": reason}))
    return accel, reason


def _probe_kvm(kernel: Path, initramfs: Path, log_dir: Path) -> tuple[str, str, bool]:
    """(accel, reason, conclusive)."""
    request = BootRequest(
        kernel=kernel,
        initramfs=initramfs,
        console_log=log_dir / "kvm-probe.log",
        data_log=None,
        accel="kvm",
        memory_mb=256,
        cpus=1,
        cmdline="",
        boot_timeout=KVM_PROBE_DEADLINE,
        job_timeout=KVM_PROBE_DEADLINE,
    )
    argv = qemu_argv(request)
    log_dir.mkdir(parents=True, exist_ok=True)
    with request.console_log.open("wb") as log:
        child = pexpect.spawn(argv[0], argv[1:], timeout=None, echo=False)
        child.logfile_read = log
        try:
            index = child.expect(
                [r"Linux version", pexpect.EOF, pexpect.TIMEOUT], timeout=KVM_PROBE_DEADLINE
            )
        finally:
            _terminate(child)
    if index == 0:
        return "kvm", "KVM probe booted a kernel", True
    if index == 1:
        return "tcg", "KVM probe: QEMU exited before the kernel printed (see kvm-probe.log)", False
    return (
        "tcg",
        f"KVM probe: no kernel output in {KVM_PROBE_DEADLINE:.0f}s (nested KVM hang)",
        True,
    )
