"""Real OpenSSH servers on 127.0.0.1 for the tests: each with its own host key, config and key.

Debian's sshd (openssh-server, installed by scripts/setup.sh) runs in the foreground
(`sshd -D -e -f CONFIG`, an absolute path as sshd requires) on a free loopback port, as the
user running the tests (root: the privilege separation directory /run/sshd is created).
`kill()` takes a host down the way a crash would: the listener and every session it forked,
with whatever those sessions run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def available() -> str | None:
    """None when the tests can start sshd here, or why not."""
    if not SSHD.exists():
        return "needs openssh-server (scripts/setup.sh installs it)"
    if shutil.which("ssh-keygen") is None:
        return "needs ssh-keygen (openssh-client)"
    if os.geteuid() != 0:
        return "sshd must run as root (privilege separation, logging in as root)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True)  # fmt: skip


def _descendants(pid: int) -> list[int]:
    """Every process below pid (children first found through /proc/*/stat's ppid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SshdHost:
    """One sshd on 127.0.0.1:<free port> with its own files under `home`."""

    def __init__(self, name: str, home: Path, workdir: Path) -> None:
        self.name = name
        self.home = home
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)
        self.host_key = home / "ssh_host_ed25519_key"
        self.client_key = home / "id_ed25519"
        for key in (self.host_key, self.client_key):
            for f in (key, key.with_name(key.name + ".pub")):
                f.unlink(missing_ok=True)
            _keygen(key)
        (home / "authorized_keys").write_text((home / "id_ed25519.pub").read_text())
        public_host_key = (home / "ssh_host_ed25519_key.pub").read_text().split()
        self.known_hosts = home / "known_hosts"
        self.known_hosts.write_text(
            f"[127.0.0.1]:{self.port} {public_host_key[0]} {public_host_key[1]}\n"
        )
        self.config = home / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {home / 'authorized_keys'}\n"
            f"PidFile {home / 'sshd.pid'}\n"
            "UsePAM no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            # The tests' temporary directories are not root-only; the keys in them are theirs.
            "StrictModes no\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\n"
            "LogLevel ERROR\n"
        )

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        log = (self.home / "sshd.log").open("ab")
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config)],
                                     stdout=log, stderr=log)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.home / "sshd.log").read_text()
                raise RuntimeError(f"sshd {self.name} exited: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd {self.name} did not listen on 127.0.0.1:{self.port}")

    def sessions(self) -> list[int]:
        return _descendants(self.proc.pid) if self.proc else []

    def kill(self) -> None:
        """The host dies: SIGKILL to the listener and everything its sessions run."""
        if self.proc is None:
            return
        victims = [self.proc.pid, *self.sessions()]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def hosts_entry(self, jobs: int = 1) -> dict[str, object]:
        return {
            "name": self.name, "host": "127.0.0.1", "port": self.port, "user": "root",
            "key": str(self.client_key), "known_hosts": str(self.known_hosts),
            "workdir": str(self.workdir), "jobs": jobs, "min_free": "1G",
        }  # fmt: skip
