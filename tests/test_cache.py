"""Cache safety: atomic artifacts, exclusive locks, remembered tarball hashes."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from harness import cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLIO_HARNESS_CACHE", str(tmp_path / "cache"))


def test_staging_dir_publishes_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "kernels" / "key"
    with pytest.raises(KeyboardInterrupt), cache.staging_dir(final) as staging:
        (staging / "bzImage").write_text("half")
        raise KeyboardInterrupt
    assert not final.exists()
    assert list((tmp_path / "kernels").iterdir()) == []  # no debris either
    with cache.staging_dir(final) as staging:
        (staging / "bzImage").write_text("whole")
    assert (final / "bzImage").read_text() == "whole"


def _hold(name: str, seconds: float, log: str) -> None:
    with cache.locked(name):
        with open(log, "a") as f:
            f.write(f"in {time.monotonic()}\n")
        time.sleep(seconds)
        with open(log, "a") as f:
            f.write(f"out {time.monotonic()}\n")


def test_lock_serialises_two_processes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    first = ctx.Process(target=_hold, args=("source-x", 0.5, str(log)))
    second = ctx.Process(target=_hold, args=("source-x", 0.0, str(log)))
    first.start()
    time.sleep(0.2)
    second.start()
    first.join(10)
    second.join(10)
    events = [line.split()[0] for line in log.read_text().splitlines()]
    assert events == ["in", "out", "in", "out"]  # never two holders at once


def test_tarball_hash_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    tarball = tmp_path / "linux.tar.xz"
    tarball.write_bytes(b"one")
    first = cache.sha256_file_cached(tarball)
    assert first == cache.sha256_bytes(b"one")
    tarball.write_bytes(b"two!")
    assert cache.sha256_file_cached(tarball) == cache.sha256_bytes(b"two!")
