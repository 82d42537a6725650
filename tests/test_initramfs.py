"""The guest image: a valid newc archive with busybox, mmwork, jobs and an /init."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness import initramfs

ROOT = Path(__file__).resolve().parent.parent


def test_cpio_is_readable_by_gnu_cpio(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("cpio not installed")
    w = initramfs.CpioWriter()
    w.directory("bin")
    w.file("bin/hello", b"#!/bin/sh\necho hi\n", 0o755)
    w.symlink("bin/sh", "busybox")
    archive = tmp_path / "a.cpio"
    archive.write_bytes(w.finish())
    listing = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=archive.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    assert "bin/hello" in listing and "bin/sh -> busybox" in listing
    assert "-rwxr-xr-x" in listing
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=archive.read_bytes(), cwd=out, check=True)
    assert (out / "bin" / "hello").read_bytes() == b"#!/bin/sh\necho hi\n"


def test_init_script_runs_jobs_between_markers_and_resets() -> None:
    jobs = [initramfs.Job("a", script="scenario a\nend\n"), initramfs.Job("b", command="free")]
    text = initramfs.init_script(jobs, initramfs.GuestSettings(), interactive=False)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "mount -t debugfs debugfs /sys/kernel/debug" in lines
    assert any("khugepaged/scan_sleep_millisecs" in line for line in lines)
    begin_a = lines.index(f"echo {initramfs.MARK_BEGIN} a > /dev/kmsg")
    assert lines[begin_a + 1] == "/bin/mmwork /jobs/a.script"
    assert lines[begin_a + 2].startswith(f"echo {initramfs.MARK_END} a status=$?")
    assert "sh -c free" in lines
    assert lines[-1] == "reboot -f" and lines[-3] == f"echo {initramfs.MARK_DONE} > /dev/kmsg"


def test_init_script_holds_the_data_channel_and_can_gzip_records() -> None:
    jobs = [initramfs.Job("a", script="scenario a\nend\n"), initramfs.Job("b", command="free")]
    settings = initramfs.GuestSettings(compress_records=True)
    lines = initramfs.init_script(jobs, settings, interactive=False).splitlines()
    # Opened once, raw, before the first job; closed (drained) before the reset.
    opened = next(i for i, line in enumerate(lines) if "exec 9>/dev/ttyS1" in line)
    assert "stty -F /dev/ttyS1 raw" in lines[opened]
    assert opened < lines.index(f"echo {initramfs.MARK_BEGIN} a > /dev/kmsg")
    assert lines.index("exec 9>&-") < lines.index(f"echo {initramfs.MARK_DONE} > /dev/kmsg")
    begin_a = lines.index(f"echo {initramfs.MARK_BEGIN} a > /dev/kmsg")
    assert lines[begin_a + 1] == "/bin/mmwork -o /records/r /jobs/a.script; s=$?"
    assert lines[begin_a + 2] == "gzip -1 -c /records/r >&9; rm -f /records/r"
    # On ramfs, which never has THPs: records on tmpfs would perturb shmem's counters.
    assert "mkdir -p /records && mount -t ramfs ramfs /records" in lines
    assert lines[begin_a + 3] == f"echo {initramfs.MARK_END} a status=$s > /dev/kmsg"
    assert "sh -c free" in lines  # a command job is not compressed
    assert "gzip" in initramfs.BUSYBOX_APPLETS


def test_build_contains_static_programs_and_jobs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FOLIO_HARNESS_CACHE", str(tmp_path / "cache"))
    try:
        initramfs.find_busybox()
    except Exception as exc:
        pytest.skip(str(exc))
    image = initramfs.build(
        tmp_path / "i.cpio", ROOT / "guest-tests", [initramfs.Job("s", script="scenario s\nend\n")]
    )
    data = image.read_bytes()
    assert data.startswith(b"070701") and len(data) % 512 == 0
    for name in (b"bin/busybox", b"bin/mmwork", b"jobs/s.script", b"init", b"TRAILER!!!"):
        assert name + b"\0" in data
    mmwork = next((tmp_path / "cache" / "guest").glob("mmwork-*/mmwork"))
    assert initramfs.is_static_elf(mmwork)
    # Same inputs, same bytes: the image is reproducible.
    again = initramfs.build(
        tmp_path / "j.cpio", ROOT / "guest-tests", [initramfs.Job("s", script="scenario s\nend\n")]
    )
    assert again.read_bytes() == data


def test_dynamic_binary_is_not_static() -> None:
    assert not initramfs.is_static_elf(Path("/bin/ls"))
