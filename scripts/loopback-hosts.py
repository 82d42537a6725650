#!/usr/bin/env python3
"""Real OpenSSH servers on 127.0.0.1 as nightly hosts, for as long as a command runs.

Tries `harness nightly --hosts` on one machine, the way the e2e tests do (tests/sshd.py:
Debian's sshd on free loopback ports, each with its own host key, config and client key,
logging in as root). The hosts' project copies live under
~/.cache/folio-harness-tests/nightly-hosts/<name> (shared with the tests, so their .venv
stays warm). Writes the hosts file, runs the command with HOSTS set to its path, stops the
servers, and exits with the command's status.

Usage: scripts/loopback-hosts.py [--hosts 2] [--out hosts.yaml] -- COMMAND...
  e.g. scripts/loopback-hosts.py -- .venv/bin/harness nightly --hosts '{hosts}'
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import sshd  # noqa: E402  (the tests' server, not a copy of it)

WORKDIRS = Path.home() / ".cache" / "folio-harness-tests" / "nightly-hosts"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2, help="how many sshd hosts")
    parser.add_argument("--out", type=Path, help="hosts file to write (default: a temp file)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ('{hosts}': file)")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    why_not = sshd.available()
    if why_not:
        print(f"loopback-hosts: cannot start sshd here: {why_not}", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="folio-loopback-hosts-"))
    names = [chr(ord("a") + i) for i in range(args.hosts)]
    hosts = [sshd.SshdHost(name, home / f"sshd-{name}", WORKDIRS / name) for name in names]
    hosts_file = args.out or home / "hosts.yaml"
    try:
        for host in hosts:
            host.start()
            print(f"loopback-hosts: {host.name} on 127.0.0.1:{host.port} "
                  f"(work directory {host.workdir})", flush=True)  # fmt: skip
        hosts_file.write_text(yaml.safe_dump({"hosts": [h.hosts_entry() for h in hosts]}))
        argv = [part.replace("{hosts}", str(hosts_file)) for part in command]
        return subprocess.run(argv, env={**os.environ, "HOSTS": str(hosts_file)},
                              check=False).returncode  # fmt: skip
    except KeyboardInterrupt:
        return 130
    finally:
        for host in hosts:
            host.stop()


if __name__ == "__main__":
    sys.exit(main())
