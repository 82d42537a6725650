"""harness doctor: check every host tool a run needs and say how to get what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import initramfs, runconfig

APT_PACKAGES = (
    "qemu-system-x86", "linux-source-6.1", "busybox-static", "build-essential", "flex", "bison",
    "bc", "libelf-dev", "libssl-dev", "cpio", "ccache", "xz-utils", "rsync", "git", "python3-venv",
    "libnuma-dev", "libcap-dev",
)  # fmt: skip


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    apt: str | None = None  # package that fixes it

    def line(self) -> str:
        mark = "ok  " if self.ok else "MISS"
        return f"  [{mark}] {self.name}: {self.detail}"


def _tool(name: str, package: str) -> Check:
    path = shutil.which(name)
    return Check(name, path is not None, path or "not on PATH", None if path else package)


def _static_gcc() -> Check:
    if shutil.which("gcc") is None:
        return Check("gcc -static", False, "gcc not on PATH", "build-essential")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("int main(void) { return 0; }\n")
        result = subprocess.run(
            ["gcc", "-static", "-o", str(Path(tmp) / "t"), str(src)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        return Check("gcc -static", False, "cannot link a static program", "libc6-dev")
    return Check("gcc -static", True, "links static programs")


def _static_lib(name: str, package: str, why: str) -> Check:
    found = any((Path(d) / name).exists() for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib"))
    return Check(name, found, f"needed by {why}", None if found else package)


def _busybox() -> Check:
    try:
        return Check("busybox (static)", True, str(initramfs.find_busybox()))
    except Exception as exc:
        return Check("busybox (static)", False, str(exc), "busybox-static")


def _kvm() -> Check:
    if not os.path.exists("/dev/kvm"):
        return Check("kvm", True, "no /dev/kvm: runs use TCG (slower, always works)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Check("kvm", True, "/dev/kvm not writable by this user: runs use TCG")
    return Check(
        "kvm",
        True,
        "/dev/kvm present; 'accel: auto' probes it once (nested KVM can hang), falling back to TCG",
    )


def checks() -> list[Check]:
    source = runconfig.DEFAULT_SOURCE
    return [
        _tool("qemu-system-x86_64", "qemu-system-x86"),
        _tool("make", "build-essential"),
        _tool("flex", "flex"),
        _tool("bison", "bison"),
        _tool("bc", "bc"),
        _tool("ccache", "ccache"),
        _tool("git", "git"),
        _tool("xz", "xz-utils"),
        _static_gcc(),
        _busybox(),
        Check(
            "libelf headers",
            Path("/usr/include/libelf.h").exists() or Path("/usr/include/gelf.h").exists(),
            "needed by objtool (ORC unwinder in the mm-debug fragment)",
            None if Path("/usr/include/gelf.h").exists() else "libelf-dev",
        ),
        Check(
            "openssl headers",
            Path("/usr/include/openssl/ssl.h").exists(),
            "needed by scripts/ for some configs",
            None if Path("/usr/include/openssl/ssl.h").exists() else "libssl-dev",
        ),
        _static_lib("libnuma.a", "libnuma-dev", "the static ksm_tests and migration selftests"),
        _static_lib("libcap.a", "libcap-dev", "the static mlock-random-test and memfd_secret"),
        _tool("rsync", "rsync"),  # make headers_install for the selftests
        Check(
            "kernel source",
            source.exists(),
            str(source) if source.exists() else f"{source} missing",
            None if source.exists() else "linux-source-6.1",
        ),
        _kvm(),
    ]


def main() -> int:
    results = checks()
    print("harness doctor:")
    for c in results:
        print(c.line())
    missing = sorted({c.apt for c in results if not c.ok and c.apt})
    if missing:
        print("\nInstall what is missing with:")
        print(f"  apt-get update && apt-get install -y {' '.join(missing)}")
        print("or run scripts/setup.sh, which installs everything the harness uses.")
        return 1
    print("\nEverything a run needs is here.")
    return 0
