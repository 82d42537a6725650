"""The guest image: Debian's static busybox, the static guest programs and an /init script.

The cpio archive is written here directly (newc format, fixed mtimes and owners) so it needs
no host cpio and is byte-identical for identical inputs.
"""

from __future__ import annotations

import io
import shlex
import shutil
import stat
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness import cache, proc
from harness.errors import GuestError

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
BUSYBOX_APPLETS = (
    "sh", "mount", "umount", "mkdir", "echo", "cat", "ls", "poweroff", "reboot", "sleep",
    "dmesg", "grep", "head", "tail", "uname", "free", "ps", "kill", "mkswap", "swapon",
    "sync", "setsid", "cttyhack", "stty", "wc", "true", "false", "env", "hexdump", "od",
    "timeout", "gzip",
)  # fmt: skip
BASE_DIRS = ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "jobs", "etc", "root")
GUEST_CFLAGS = ("-static", "-O2", "-g", "-Wall", "-Wextra")

# Console markers the host driver waits for (machine.py); kept in one place.
MARK_BOOTED = "@@HARNESS-BOOTED"
MARK_BEGIN = "@@HARNESS-BEGIN"
MARK_END = "@@HARNESS-END"
MARK_DONE = "@@HARNESS-DONE"


@dataclass(frozen=True)
class GuestSettings:
    """What /init does before running anything."""

    park_khugepaged: bool = True
    # Each scenario's records go to a file and then through gzip to the data channel: a
    # fifth of the bytes through the emulated UART, which is what limits a boot of hundreds
    # of generated workloads (harness fuzz). The data log is then concatenated gzip members.
    compress_records: bool = False


@dataclass(frozen=True)
class Job:
    """One unit of guest work: a scenario script for mmwork, or a raw command."""

    name: str
    script: str | None = None  # mmwork line script
    command: str | None = None  # shell command (harness boot -- CMD)


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.exists() and is_static_elf(candidate):
            return candidate
    raise GuestError(
        "no static busybox found (looked for /bin/busybox); install it with "
        "'apt-get install busybox-static'"
    )


def is_static_elf(path: Path) -> bool:
    """True for an ELF64 executable without a PT_INTERP program header."""
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return False
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def compile_guest_programs(source_dir: Path) -> dict[str, Path]:
    """gcc -static every guest-tests/*.c; cached by source content and compiler version."""
    sources = sorted(source_dir.glob("*.c"))
    gcc = proc.output_of(["gcc", "--version"]).splitlines()[0]
    programs: dict[str, Path] = {}
    for src in sources:
        key_text = f"{gcc}\n{' '.join(GUEST_CFLAGS)}\n{cache.sha256_file(src)}"
        key = cache.sha256_bytes(key_text.encode())[:16]
        store = cache.root() / "guest" / f"{src.stem}-{key}"
        binary = store / src.stem
        if not binary.exists():
            with cache.staging_dir(store) as staging:
                result = proc.run(
                    ["gcc", *GUEST_CFLAGS, "-o", str(staging / src.stem), str(src)], check=False
                )
                if result.returncode != 0:
                    raise GuestError(
                        f"{src}: guest program does not compile with 'gcc -static' "
                        f"(static glibc comes with libc6-dev):\n{result.stdout.strip()[-1500:]}"
                    )
        programs[src.stem] = binary
    return programs


def init_script(jobs: Iterable[Job], settings: GuestSettings, interactive: bool) -> str:
    """The guest's /init: mount, set mm knobs, run each job between markers, power off."""
    lines = [
        "#!/bin/sh",
        "export PATH=/bin:/sbin",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev",
        "mount -t debugfs debugfs /sys/kernel/debug",
        "mkdir -p /tmp && mount -t tmpfs tmpfs /tmp",
    ]
    if settings.compress_records:
        # ramfs, not tmpfs: records written to shmem would get THPs under a scenario's
        # shmem_enabled=force and show up in the next scenario's counters and splits.
        lines.append("mkdir -p /records && mount -t ramfs ramfs /records")
    if settings.park_khugepaged:
        khp = "/sys/kernel/mm/transparent_hugepage/khugepaged"
        # Park khugepaged: a collapse behind a scenario's back would change what it probes.
        lines += [
            f"echo 4294967295 > {khp}/scan_sleep_millisecs",
            f"echo 4294967295 > {khp}/alloc_sleep_millisecs",
        ]
    # Hold the data channel open for the whole boot: otherwise every job's last close of
    # ttyS1 shuts the UART down (and waits for it to drain) and the next open starts it up
    # again, a quarter of a second per job under TCG, which a boot of hundreds of jobs
    # (harness fuzz) pays hundreds of times.
    lines.append("[ -e /dev/ttyS1 ] && stty -F /dev/ttyS1 raw && exec 9>/dev/ttyS1")
    # Markers go through /dev/kmsg: printk emits whole lines, so a kernel message can never
    # land in the middle of one (a plain echo to the console can interleave).
    lines.append(
        f"echo {MARK_BOOTED} $(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) > /dev/kmsg"
    )
    for job in jobs:
        name = shlex.quote(job.name)
        lines.append(f"echo {MARK_BEGIN} {name} > /dev/kmsg")
        if job.script is not None and settings.compress_records:
            lines += [
                f"/bin/mmwork -o /records/r /jobs/{job.name}.script; s=$?",
                "gzip -1 -c /records/r >&9; rm -f /records/r",
                f"echo {MARK_END} {name} status=$s > /dev/kmsg",
            ]
            continue
        if job.script is not None:
            # mmwork writes records to /dev/ttyS1 (the data channel) by default.
            lines.append(f"/bin/mmwork /jobs/{job.name}.script")
        else:
            lines.append(f"sh -c {shlex.quote(job.command or 'true')}")
        lines.append(f"echo {MARK_END} {name} status=$? > /dev/kmsg")
    if interactive:
        lines.append("setsid cttyhack sh")
    # No ACPI in the guest kernel: a reset is how it stops QEMU (-no-reboot). The last close
    # of the data channel waits for the UART to send what is still buffered, so no record
    # is lost to the reset.
    lines += ["exec 9>&-", f"echo {MARK_DONE} > /dev/kmsg", "sync", "reboot -f"]
    return "\n".join(lines) + "\n"


class CpioWriter:
    """Minimal newc cpio writer: directories, regular files and symlinks."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes) -> None:
        name_bytes = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_bytes), 0]
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        self._ino += 1
        self._out.write(header + name_bytes)
        self._out.write(b"\0" * (-(len(header) + len(name_bytes)) % 4))
        self._out.write(data)
        self._out.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, b"")

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"")
        data = self._out.getvalue()
        return data + b"\0" * (-len(data) % 512)


def build(
    dest: Path,
    guest_tests: Path,
    jobs: list[Job],
    settings: GuestSettings | None = None,
    interactive: bool = False,
    extra_files: Mapping[str, Path] | None = None,
) -> Path:
    """Write the initramfs for these jobs to `dest`; returns dest.

    `extra_files` maps archive paths ('selftests/gup_test') to host files, added executable.
    """
    busybox = find_busybox()
    programs = compile_guest_programs(guest_tests)
    if any(job.script is not None for job in jobs) and "mmwork" not in programs:
        raise GuestError(f"{guest_tests}/mmwork.c is missing: scenarios need the interpreter")
    cpio = CpioWriter()
    for d in BASE_DIRS:
        cpio.directory(d)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in BUSYBOX_APPLETS:
        cpio.symlink(f"bin/{applet}", "busybox")
    for name, binary in sorted(programs.items()):
        cpio.file(f"bin/{name}", binary.read_bytes(), 0o755)
    made = set(BASE_DIRS)
    for name, host_path in sorted((extra_files or {}).items()):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            if "/".join(parts[:i]) not in made:
                made.add("/".join(parts[:i]))
                cpio.directory("/".join(parts[:i]))
        cpio.file(name, host_path.read_bytes(), 0o755)
    for job in jobs:
        if job.script is not None:
            cpio.file(f"jobs/{job.name}.script", job.script.encode())
    cpio.file("init", init_script(jobs, settings or GuestSettings(), interactive).encode(), 0o755)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(cpio.finish())
    shutil.move(tmp, dest)
    return dest
