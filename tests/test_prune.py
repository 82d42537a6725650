"""Bounded caches: LRU order, --keep, --max-size, the automatic cap, busy trees kept."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest

from harness import cli, prune
from harness.errors import ConfigError

SOURCE = "tar-0123456789abcdef"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FOLIO_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(prune.CAP_ENV, raising=False)
    return tmp_path / "cache"


def make_entry(root: Path, kind: str, name: str, size: int, age: float) -> Path:
    """A cache entry of `size` bytes of real data, last used `age` seconds ago."""
    path = root / kind / name
    path.mkdir(parents=True)
    (path / "blob").write_bytes(os.urandom(size))
    if kind == "kernels":
        meta = {"inputs": {"source": SOURCE, "series": "abcd", "config": "f" * 64}}
        (path / "meta.json").write_text(json.dumps(meta))
    if kind == "selftests":
        (path / "meta.json").write_text(json.dumps({"source": SOURCE}))
    prune.touch(path, measure=True)
    stamp = json.loads((path / prune.STAMP).read_text())
    stamp["used"] = time.time() - age
    (path / prune.STAMP).write_text(json.dumps(stamp))
    return path


def populate(root: Path) -> dict[str, Path]:
    k = 1 << 16
    return {
        "k-old": make_entry(root, "kernels", "k-old", k, 5000),
        "k-mid": make_entry(root, "kernels", "k-mid", k, 3000),
        "k-new": make_entry(root, "kernels", "k-new", k, 10),
        "b-old": make_entry(root, "builds", f"{SOURCE}-aaaa", 4 * k, 4000),
        "b-new": make_entry(root, "builds", f"{SOURCE}-bbbb", 4 * k, 20),
        "s-old": make_entry(root, "selftests", "s-old", 2 * k, 6000),
    }


def test_entries_come_least_recently_used_first(root: Path) -> None:
    made = populate(root)
    found = prune.entries()
    order = ("s-old", "k-old", "b-old", "k-mid", "b-new", "k-new")
    assert [e.path for e in found] == [made[n] for n in order]
    assert {e.source for e in found} == {SOURCE}
    assert all(e.size >= 1 << 16 for e in found)
    prune.touch(made["k-old"])  # a use moves it to the end
    assert prune.entries()[-1].path == made["k-old"]


def test_keep_n_keeps_the_newest_of_each_kind(root: Path) -> None:
    made = populate(root)
    result = prune.prune(keep=1)
    assert {e.path for e in result.removed} == {made["k-old"], made["k-mid"], made["b-old"]}
    for name in ("k-new", "b-new", "s-old"):
        assert made[name].exists()
    for name in ("k-old", "k-mid", "b-old"):
        assert not made[name].exists()
    assert not [p for p in (root / "kernels").iterdir() if p.name.startswith(".")]  # no trash


def test_max_size_evicts_oldest_until_it_fits(root: Path) -> None:
    made = populate(root)
    total = sum(e.size for e in prune.entries())
    b_new = next(e for e in prune.entries() if e.path == made["b-new"])
    result = prune.prune(max_size=total - b_new.size)  # must free about one build's worth
    # Oldest first: the selftests (2 blocks), the old kernel (1), then the old build (4).
    assert [e.path for e in result.removed] == [made["s-old"], made["k-old"], made["b-old"]]
    assert result.left <= total - b_new.size


def test_a_busy_source_tree_keeps_its_build_directories(root: Path) -> None:
    made = populate(root)
    lock = root / "locks" / f"source-{SOURCE}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process's build
        result = prune.prune(keep=1)
    assert made["b-old"] in {e.path for e in result.busy}
    assert made["b-old"].exists()
    assert not made["k-old"].exists()  # kernels need no tree
    assert not prune.prune(keep=1).busy and not made["b-old"].exists()  # lock released


def test_the_automatic_cap(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = populate(root)
    monkeypatch.setenv(prune.CAP_ENV, "off")
    assert prune.enforce_cap() is None
    monkeypatch.setenv(prune.CAP_ENV, "1G")
    assert prune.enforce_cap() is None  # under the cap: nothing read but stamps
    monkeypatch.setenv(prune.CAP_ENV, "300K")
    result = prune.enforce_cap(protect=[made["s-old"]])
    assert result is not None
    assert made["s-old"].exists()  # protected (the run's own entry), though the oldest
    assert made["k-new"].exists()  # the newest that fit are kept
    assert {e.path for e in result.removed} == {made[n] for n in ("k-old", "b-old", "k-mid",
                                                                  "b-new")}  # fmt: skip
    assert result.left <= 300 << 10
    monkeypatch.delenv(prune.CAP_ENV)
    assert prune.cap() == prune.DEFAULT_CAP >= 4 << 30


def test_sizes_parse_and_bad_ones_are_named() -> None:
    assert prune.parse_size("4G") == 4 << 30
    assert prune.parse_size("1.5GiB") == 3 << 29
    assert prune.parse_size("500M") == 500 << 20
    assert prune.parse_size("4096") == 4096
    with pytest.raises(ConfigError, match=r"--max-size.*'4X'"):
        prune.parse_size("4X", "--max-size")


def test_cache_commands(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made = populate(root)
    (root / "sources").mkdir()
    assert cli.main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert out.index("selftests/s-old") < out.index("kernels/k-new")
    assert "6 entries" in out and "kept: sources" in out and "cap 8.0G" in out
    assert cli.main(["cache", "prune", "--keep", "2"]) == 0
    out = capsys.readouterr().out
    assert "removed kernel" in out and "kernels/k-old" in out and "freed" in out
    assert not made["k-old"].exists() and made["k-mid"].exists()
    assert cli.main(["cache", "prune", "--max-size", "nonsense"]) == 2
    assert "--max-size" in capsys.readouterr().err


def test_an_entry_without_a_stamp_is_measured_once(root: Path) -> None:
    old = root / "builds" / f"{SOURCE}-cccc"
    old.mkdir(parents=True)
    (old / "vmlinux").write_bytes(os.urandom(1 << 16))
    os.utime(old, (1_000_000_000, 1_000_000_000))
    (entry,) = prune.entries()
    assert entry.used == 1_000_000_000 and entry.size >= 1 << 16
    assert json.loads((old / prune.STAMP).read_text())["size"] == entry.size
