"""Other machines over SSH (fabric): the hosts file, bootstrapping a host, running a cell there.

A host is bootstrapped once a night: the project is copied to its work directory (skipped
when that copy is already the same), scripts/setup.sh runs there (idempotent) and then
`harness doctor`; the hosts are bootstrapped side by side through a fabric ThreadingGroup.
A cell runs on a host as `harness nightly --cell NAME` in that copy; its directory comes back
as a tarball. Anything that goes wrong on the way (SSH drops, a tool is missing, the disk is
full, the cell runner dies) is a HostError: the caller runs the cell elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shlex
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import schema
from harness.errors import ConfigError, HarnessError

# Never copied to a host: its own environment, results and caches are made there.
BUNDLE_SKIP = frozenset({
    ".git", ".venv", "results", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
})  # fmt: skip
BUNDLE_ID_FILE = ".nightly-bundle-id"


class HostError(HarnessError):
    """This host cannot run the cell (connection, bootstrap, tools, disk); another may."""


@dataclass(frozen=True)
class HostSpec:
    name: str
    host: str
    port: int = 22
    user: str | None = None
    key: Path | None = None  # private key file; otherwise the user's keys and agent
    known_hosts: Path | None = None  # with it, unknown or changed host keys are refused
    workdir: str = "folio-harness-nightly"  # on the host; relative to the login's home
    jobs: int = 1  # cells at a time on this host
    nice: int = 0  # run cells under nice -n (a host shared with other work)
    min_free_mb: int = 2048  # refuse the host below this much free disk in workdir
    env: dict[str, str] = field(default_factory=dict)
    where: schema.Where | None = None


def load_hosts(path: Path) -> list[HostSpec]:
    root = schema.load(path)
    f = root.mapping(("hosts",))
    specs: list[HostSpec] = []
    for item in schema.require(f, "hosts", root).items():
        h = item.mapping(("name", "host", "port", "user", "key", "known_hosts", "workdir",
                          "jobs", "nice", "min_free", "env"))  # fmt: skip
        name = schema.require(h, "name", item).as_str()
        for other in specs:
            if other.name == name:
                raise h["name"].error(f"host name {name!r} is already used at {other.where}")

        def file(key: str, h: dict[str, schema.Node] = h) -> Path | None:
            if key not in h:
                return None
            p = Path(h[key].as_str()).expanduser()
            p = p if p.is_absolute() else (path.parent / p).resolve()
            if not p.exists():
                raise h[key].error(f"{p} not found")
            return p

        env = {k: v.as_text() for k, v in h["env"].entries()} if "env" in h else {}
        specs.append(HostSpec(
            name=name,
            host=schema.require(h, "host", item).as_str(),
            port=h["port"].as_int(minimum=1) if "port" in h else 22,
            user=h["user"].as_str() if "user" in h else None,
            key=file("key"),
            known_hosts=file("known_hosts"),
            workdir=h["workdir"].as_str() if "workdir" in h else HostSpec.workdir,
            jobs=h["jobs"].as_int(minimum=1) if "jobs" in h else 1,
            nice=h["nice"].as_int(minimum=0) if "nice" in h else 0,
            min_free_mb=(h["min_free"].as_size(align=1 << 20) >> 20 if "min_free" in h
                         else HostSpec.min_free_mb),
            env=env,
            where=item.where,
        ))  # fmt: skip
    if not specs:
        raise ConfigError(f"{path}: list at least one host under 'hosts'")
    return specs


# --- the project, as shipped to a host -------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """The project tree as a tarball, and an id of its content (skip the copy when equal)."""

    path: Path
    identity: str


def make_bundle(project: Path, dest: Path) -> Bundle:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(project):
        dirnames[:] = sorted(
            d for d in dirnames if d not in BUNDLE_SKIP and not d.endswith(".egg-info")
        )
        files.extend(Path(dirpath) / n for n in sorted(filenames))
    digest = hashlib.sha256()
    with tarfile.open(dest, "w:gz") as tar:
        for f in files:
            rel = f.relative_to(project).as_posix()
            if f.is_symlink():
                digest.update(f"{rel} -> {os.readlink(f)}\n".encode())
            elif f.is_file():
                digest.update(f"{rel} {f.stat().st_mode & 0o777:o} ".encode())
                digest.update(hashlib.sha256(f.read_bytes()).digest())
            else:
                continue
            tar.add(f, arcname=rel, recursive=False)
    return Bundle(dest, digest.hexdigest()[:16])


# --- one host ----------------------------------------------------------------------------------


class Host:
    """One SSH host: a fabric Connection with the host's environment and work directory."""

    def __init__(self, spec: HostSpec) -> None:
        from fabric import Config, Connection  # imported here: only fan-out needs paramiko

        self.spec = spec
        self.dead: str | None = None  # why this host was given up, once it was
        self.lock = threading.Lock()
        connect: dict[str, Any] = {"allow_agent": spec.key is None}
        if spec.key is not None:
            connect.update(key_filename=str(spec.key), look_for_keys=False)
        env = {"FOLIO_WORKDIR": spec.workdir, **spec.env}
        # The user's ~/.ssh/config is not read: the hosts file says everything (reproducible).
        config = Config(overrides={"load_ssh_configs": False, "run": {"env": env}})
        self.connection = Connection(
            spec.host, user=spec.user, port=spec.port, connect_timeout=20,
            connect_kwargs=connect, config=config, inline_ssh_env=True,
        )  # fmt: skip
        if spec.known_hosts is not None:
            import paramiko

            self.connection.client.load_host_keys(str(spec.known_hosts))
            self.connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, command: str, **kwargs: Any) -> Any:
        """Run a shell command on the host; any SSH-level failure becomes a HostError."""
        kwargs.setdefault("hide", True)
        kwargs.setdefault("warn", True)
        try:
            return self.connection.run(command, in_stream=False, **kwargs)
        except HostError:
            raise
        except Exception as exc:  # paramiko, socket and invoke errors alike: the link is gone
            raise HostError(f"host {self.name}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        # Closing a connection whose peer died can raise: nothing is left to do then.
        with contextlib.suppress(Exception):
            self.connection.close()


def bootstrap(hosts: list[Host], project: Path, log: Callable[[str], None]) -> None:
    """Copy the project to every host, run setup.sh and doctor there; mark failures dead."""
    from fabric import ThreadingGroup

    with tempfile.TemporaryDirectory(prefix="nightly-bundle-") as tmp:
        bundle = make_bundle(project, Path(tmp) / "project.tar.gz")
        # 1. Every host at once: the work directory, its free disk, the copy it has.
        group = ThreadingGroup.from_connections([h.connection for h in hosts])
        probe = ('mkdir -p "$FOLIO_WORKDIR" && cd "$FOLIO_WORKDIR" && '
                 'df -Pk . | awk \'NR==2 {print $4}\' && '
                 f'cat project/{BUNDLE_ID_FILE} 2>/dev/null || true')  # fmt: skip
        results = _group_run(group, probe)
        by_conn = {id(h.connection): h for h in hosts}
        for conn, outcome in results.items():
            host = by_conn[id(conn)]
            if isinstance(outcome, BaseException) or outcome.exited != 0:
                host.dead = f"cannot prepare {host.spec.workdir}: {_why(outcome)}"
                continue
            lines = outcome.stdout.split()
            free_mb = int(lines[0]) // 1024 if lines and lines[0].isdigit() else 0
            if free_mb < host.spec.min_free_mb:
                host.dead = (f"only {free_mb} MiB free in {host.spec.workdir} "
                             f"(min_free {host.spec.min_free_mb} MiB)")  # fmt: skip
                continue
            if bundle.identity in lines[1:]:
                log(f"host {host.name}: project copy up to date ({bundle.identity})")
                continue
            # 2. The copy, host by host (sftp); everything but its .venv and results replaced.
            log(f"host {host.name}: copying the project ({bundle.path.stat().st_size >> 10} KiB)")
            try:
                remote_tar = f"{_workdir(host)}/project.tar.gz"
                host.connection.put(str(bundle.path), remote=remote_tar)
            except Exception as exc:
                host.dead = f"copy failed: {type(exc).__name__}: {exc}"
                continue
            unpack = host.run(
                'cd "$FOLIO_WORKDIR" && mkdir -p project && '
                "find project -mindepth 1 -maxdepth 1 ! -name .venv ! -name results "
                "-exec rm -rf {} + && tar -xzf project.tar.gz -C project && rm project.tar.gz && "
                f"echo {bundle.identity} > project/{BUNDLE_ID_FILE}"
            )
            if unpack.exited != 0:
                host.dead = f"unpacking the project failed: {_tail(unpack.stdout + unpack.stderr)}"
        # 3. Every live host at once: setup.sh (apt + .venv, idempotent), then doctor.
        live = [h for h in hosts if h.dead is None]
        if not live:
            return
        log(f"bootstrap: scripts/setup.sh and harness doctor on {', '.join(h.name for h in live)}")
        group = ThreadingGroup.from_connections([h.connection for h in live])
        setup = ('cd "$FOLIO_WORKDIR/project" && ./scripts/setup.sh && '
                 ".venv/bin/python -m harness.cli doctor")  # fmt: skip
        results = _group_run(group, setup)
        for conn, outcome in results.items():
            host = by_conn[id(conn)]
            if isinstance(outcome, BaseException) or outcome.exited != 0:
                text = "" if isinstance(outcome, BaseException) else outcome.stdout + outcome.stderr
                host.dead = f"setup.sh or doctor failed: {_why(outcome)} {_tail(text)}".strip()
            else:
                log(f"host {host.name}: ready")


def _group_run(group: Any, command: str) -> dict[Any, Any]:
    from fabric.exceptions import GroupException

    try:
        return dict(group.run(command, hide=True, warn=True, in_stream=False))
    except GroupException as exc:  # some hosts raised (unreachable, auth): keep every outcome
        return dict(exc.result)


def _why(outcome: Any) -> str:
    if isinstance(outcome, BaseException):
        return f"{type(outcome).__name__}: {outcome}"
    return f"exit {outcome.exited}"


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _workdir(host: Host) -> str:
    """The work directory as an absolute path (sftp does not expand ~ or $HOME)."""
    out = host.run('mkdir -p "$FOLIO_WORKDIR" && cd "$FOLIO_WORKDIR" && pwd')
    if out.exited != 0:
        raise HostError(f"host {host.name}: cannot enter {host.spec.workdir}")
    return str(out.stdout.strip())


def run_cell(host: Host, cell: str, matrix_rel: str, night: str, extra: list[str],
             local_dir: Path, log_file: Path) -> int:  # fmt: skip
    """Run `harness nightly --cell` on the host and bring its directory back to local_dir.

    Returns the cell runner's exit status (0, 1, 2); raises HostError when the host, not the
    cell, failed: the cell's directory then never reaches local_dir.
    """
    remote = f"cells/{night}/{cell}"
    nice = f"nice -n {host.spec.nice} " if host.spec.nice else ""
    argv = ["--results", "results", "nightly", "--matrix", matrix_rel, "--cell", cell,
            "--out", f"../{remote}", *extra]  # fmt: skip
    command = (
        f'cd "$FOLIO_WORKDIR" && rm -rf {remote} {remote}.tar.gz && mkdir -p {remote} && '
        f"cd project && exec {nice}.venv/bin/python -m harness.cli {shlex.join(argv)}"
    )
    with log_file.open("a") as out:
        out.write(f"### host {host.name}: {command}\n")
        out.flush()
        # A pty: if the connection drops, the remote session hangs up and the cell (and its
        # QEMU) get SIGHUP instead of running on unseen.
        result = host.run(command, pty=True, out_stream=_Lines(out), hide=True)
    if result.exited not in (0, 1, 2):
        raise HostError(f"host {host.name}: the cell runner ended with status {result.exited}")
    pack = host.run(
        f'cd "$FOLIO_WORKDIR/{remote}" && test -f cell.json && '
        f"tar -czf ../{cell}.tar.gz . && cd .. && pwd"
    )
    if pack.exited != 0:
        raise HostError(f"host {host.name}: cell {cell} left no cell.json: "
                        f"{_tail(pack.stdout + pack.stderr)}")  # fmt: skip
    remote_tar = f"{pack.stdout.strip()}/{cell}.tar.gz"
    with tempfile.TemporaryDirectory(prefix=f"nightly-{cell}-") as tmp:
        local_tar = Path(tmp) / "cell.tar.gz"
        try:
            host.connection.get(remote_tar, local=str(local_tar))
        except Exception as exc:
            raise HostError(f"host {host.name}: fetching {remote_tar}: {exc}") from None
        staging = local_dir.with_name(f".{local_dir.name}.incoming")
        _remove(staging)
        staging.mkdir(parents=True)
        with tarfile.open(local_tar) as tar:
            tar.extractall(staging, filter="data")
        _remove(local_dir)
        staging.rename(local_dir)
    host.run(f"rm -f {shlex.quote(remote_tar)}")
    return int(result.exited)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


class _Lines(io.TextIOBase):
    """A text sink for invoke's out_stream: writes through to a log file as it arrives."""

    def __init__(self, out: io.TextIOBase | Any) -> None:
        self._out = out

    def write(self, text: str) -> int:
        self._out.write(text)
        self._out.flush()
        return len(text)
