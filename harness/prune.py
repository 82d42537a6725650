"""Bounded caches: what the cache holds, and least-recently-used eviction to a size cap.

Evictable entries are the finished kernels (kernels/<key>), the out-of-tree build
directories (builds/<source>-<config>) and the selftest builds (selftests/<key>): each is
re-made on demand from the source tree and ccache. The source trees, ccache (capped by
CCACHE_MAXSIZE), the guest programs and the kconfig memos are small or needed by every
build and are listed, never evicted.

Each entry carries a stamp (.harness-used: when it was last used and its size then), so
the automatic cap, checked after every build that adds an entry, reads a few small files
instead of walking build directories. A build directory or selftest build is removed only
under its source tree's lock (a build may be using it); one whose lock is busy is
skipped. Everything is renamed out of place first, so a reader never sees half an entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import cache
from harness.errors import ConfigError

STAMP = ".harness-used"
KINDS = {"kernels": "kernel", "builds": "build", "selftests": "selftests"}
DEFAULT_CAP = 8 << 30  # bytes; FOLIO_HARNESS_CACHE_MAX overrides ('off' or 0: no cap)
CAP_ENV = "FOLIO_HARNESS_CACHE_MAX"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Entry:
    kind: str  # kernel | build | selftests
    path: Path
    size: int  # bytes
    used: float  # epoch seconds of the last use
    source: str | None  # source identity, for the lock that guards it
    what: str  # one line for `cache list`


def parse_size(text: str, what: str = "size") -> int:
    """'4G', '500M', '1.5GiB', '4096' -> bytes (binary units)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigError(f"{what}: expected a size such as 500M, 4G or 4096, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_size(size: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return f"{size}B"


def cap() -> int | None:
    """The automatic cap in bytes, or None when it is off."""
    raw = os.environ.get(CAP_ENV, "").strip()
    if not raw:
        return DEFAULT_CAP
    if raw.lower() in ("off", "none", "0"):
        return None
    return parse_size(raw, CAP_ENV)


def disk_usage(path: Path) -> int:
    """Bytes allocated under path (like du), without following symlinks."""
    total = 0
    stack = [path]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                for item in it:
                    try:
                        st = item.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if item.is_dir(follow_symlinks=False):
                        stack.append(Path(item.path))
        except OSError:
            continue
    return total


def touch(entry: Path, measure: bool = False) -> None:
    """Record a use of a cache entry now; `measure` re-measures its size (after a build)."""
    stamp = entry / STAMP
    size = None
    if not measure:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            size = int(json.loads(stamp.read_text())["size"])
    if size is None:
        size = disk_usage(entry)
    with contextlib.suppress(OSError):
        cache.write_atomic(stamp, json.dumps({"used": time.time(), "size": size}))


def _read_stamp(path: Path, measure: bool) -> tuple[int, float]:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads((path / STAMP).read_text())
        size = disk_usage(path) if measure else int(data["size"])
        return size, float(data["used"])
    # Made before stamps existed: measure it once, and remember.
    size, used = disk_usage(path), path.stat().st_mtime
    with contextlib.suppress(OSError):
        cache.write_atomic(path / STAMP, json.dumps({"used": used, "size": size}))
    return size, used


def _describe(kind: str, path: Path) -> tuple[str | None, str]:
    """(source identity, one-line description) of an entry."""
    if kind == "build":
        source, _, config = path.name.rpartition("-")
        return source, f"build directory, config {config}"
    meta: dict[str, object] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((path / "meta.json").read_text())
    if kind == "kernel":
        inputs = meta.get("inputs") if isinstance(meta.get("inputs"), dict) else {}
        assert isinstance(inputs, dict)
        source = inputs.get("source")
        return (
            str(source) if source else None,
            f"kernel, series {inputs.get('series', '?')}, config "
            f"{str(inputs.get('config', '?'))[:16]}",
        )
    source = meta.get("source")
    return (str(source) if source else None), "selftest build"


def entries(measure: bool = False) -> list[Entry]:
    """Every evictable entry, least recently used first."""
    root = cache.root()
    found: list[Entry] = []
    for directory, kind in KINDS.items():
        parent = root / directory
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if path.name.startswith(".") or not path.is_dir() or path.is_symlink():
                continue  # staging and trash directories are someone's work in progress
            with contextlib.suppress(OSError):
                size, used = _read_stamp(path, measure)
                source, what = _describe(kind, path)
                found.append(Entry(kind, path, size, used, source, what))
    found.sort(key=lambda e: e.used)
    return found


def kept_aside() -> list[tuple[str, int]]:
    """(name, bytes) of what the cache holds and never evicts, for `cache list`."""
    root = cache.root()
    out = []
    for name in ("sources", "ccache", "guest", "kconfig"):
        path = root / name
        if path.exists():
            out.append((name, disk_usage(path.resolve())))
    return out


@contextlib.contextmanager
def _source_lock_if_free(source: str | None) -> Iterator[bool]:
    """The source tree's lock, without waiting: True if held (or none is needed)."""
    if source is None:
        yield True
        return
    lock_dir = cache.root() / "locks"
    lock_dir.mkdir(exist_ok=True)
    with (lock_dir / f"source-{source}.lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove(entry: Entry) -> bool:
    """Evict one entry; False if its source tree is busy (a build may be using it)."""
    needs_lock = entry.source if entry.kind in ("build", "selftests") else None
    with _source_lock_if_free(needs_lock) as free:
        if not free:
            return False
        trash = entry.path.with_name(f".{entry.path.name}.evicted-{os.getpid()}")
        try:
            os.replace(entry.path, trash)
        except FileNotFoundError:
            return True  # someone else evicted it
    shutil.rmtree(trash, ignore_errors=True)
    return True


@dataclass
class Pruned:
    removed: list[Entry]
    busy: list[Entry]
    left: int  # bytes of evictable entries left


def plan(
    all_entries: list[Entry],
    keep: int | None = None,
    max_size: int | None = None,
    protect: Iterable[Path] = (),
) -> list[Entry]:
    """Which entries to evict, least recently used first.

    keep: keep only the `keep` most recently used entries of each kind.
    max_size: then evict the least recently used until the total is at most max_size.
    protect: entries never evicted (the run's own kernel and build directory).
    """
    protected = {p.resolve() for p in protect}
    candidates = [e for e in all_entries if e.path.resolve() not in protected]
    doomed: list[Entry] = []
    if keep is not None:
        for kind in KINDS.values():
            mine = [e for e in all_entries if e.kind == kind]  # oldest first
            doomed += [e for e in mine[: max(0, len(mine) - keep)] if e in candidates]
    if max_size is not None:
        total = sum(e.size for e in all_entries if e not in doomed)
        for e in candidates:
            if total <= max_size:
                break
            if e not in doomed:
                doomed.append(e)
                total -= e.size
    doomed.sort(key=lambda e: e.used)
    return doomed


def prune(
    keep: int | None = None,
    max_size: int | None = None,
    protect: Iterable[Path] = (),
    measure: bool = False,
) -> Pruned:
    all_entries = entries(measure=measure)
    removed, busy = [], []
    for e in plan(all_entries, keep, max_size, protect):
        (removed if remove(e) else busy).append(e)
    left = sum(e.size for e in all_entries) - sum(e.size for e in removed)
    return Pruned(removed, busy, left)


def enforce_cap(protect: Iterable[Path] = ()) -> Pruned | None:
    """After a build added an entry: evict the least recently used beyond the cap."""
    limit = cap()
    if limit is None:
        return None
    all_entries = entries()
    if sum(e.size for e in all_entries) <= limit:
        return None
    return prune(max_size=limit, protect=protect)


# --- the command -----------------------------------------------------------------------------


def _age(seconds: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def list_command() -> int:
    now = time.time()
    rows = entries(measure=True)
    root = cache.root()
    print(f"cache {root} (evictable, least recently used first):")
    for e in rows:
        print(
            f"  {e.kind:<9} {format_size(e.size):>7}  {_age(now - e.used):>9}  "
            f"{e.path.relative_to(root)}  {e.what}"
        )
    total = sum(e.size for e in rows)
    limit = cap()
    limit_text = f"cap {format_size(limit)} ({CAP_ENV})" if limit else f"no cap ({CAP_ENV}=off)"
    print(f"  {len(rows)} entries, {format_size(total)}; {limit_text}")
    for name, size in kept_aside():
        print(f"  kept: {name:<8} {format_size(size):>7}")
    return 0


def prune_command(keep: int | None, max_size: str | None) -> int:
    limit = parse_size(max_size, "--max-size") if max_size is not None else None
    if keep is None and limit is None:
        limit = cap()
        if limit is None:
            print(f"nothing to do: no --keep or --max-size, and {CAP_ENV}=off")
            return 0
    result = prune(keep=keep, max_size=limit, measure=True)
    root = cache.root()
    for e in result.removed:
        print(f"removed {e.kind:<9} {format_size(e.size):>7}  {e.path.relative_to(root)}")
    for e in result.busy:
        print(f"kept    {e.kind:<9} {format_size(e.size):>7}  {e.path.relative_to(root)}"
              "  (its source tree is busy with a build)")  # fmt: skip
    freed = sum(e.size for e in result.removed)
    print(f"freed {format_size(freed)} in {len(result.removed)} entries; "
          f"{format_size(result.left)} left")  # fmt: skip
    return 0
