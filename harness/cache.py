"""Where the harness keeps what outlives a run, and the small tools to keep it safe.

Layout under the cache root ($FOLIO_HARNESS_CACHE, default ~/.cache/folio-harness):
  sources/<id>/tree      the kernel source as a git repository (base commit + series branch)
  builds/<id>-<config>/  out-of-tree build directories, one per source and merged config
  kernels/<key>/         finished artifacts (bzImage, .config, build.log, meta.json)
  guest/<key>/           compiled guest programs
  ccache/                compiler cache
  locks/                 flock files
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def root() -> Path:
    env = os.environ.get("FOLIO_HARNESS_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "folio-harness"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_cached(path: Path) -> str:
    """sha256 of a large file (a source tarball), remembered by path, size and mtime."""
    st = path.stat()
    memo_path = root() / "file-hashes.json"
    memo: dict[str, Any] = {}
    if memo_path.exists():
        with contextlib.suppress(ValueError, OSError):
            memo = json.loads(memo_path.read_text())
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    entry = memo.get(str(path))
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return str(entry["sha256"])
    digest = sha256_file(path)
    memo[str(path)] = {"stamp": stamp, "sha256": digest}
    write_atomic(memo_path, json.dumps(memo, indent=1, sort_keys=True))
    return digest


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str) -> None:
    """Write text so a reader never sees a half-written file, even after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp creates it 0600; give it the mode open() would have (results are shared).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(name: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """An exclusive flock held for the block; released by the kernel if we die.

    `on_wait` is told when another process holds the lock, so a run never waits silently.
    """
    lock_dir = root() / "locks"
    lock_dir.mkdir(exist_ok=True)
    with (lock_dir / f"{name}.lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(f"waiting for another harness process holding '{name}'")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A scratch directory renamed to `final` only if the block succeeds.

    An interrupted or failed step leaves no entry at `final`, so a later run never
    mistakes half an artifact for a cached one.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
