"""Bisect's search over prefixes, with each prefix's run replaced by a known verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import bisect, run, runconfig
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parent.parent


def series_config(tmp_path: Path, count: int) -> runconfig.RunConfig:
    """A run config whose series has `count` small patches (files only: nothing is built)."""
    names = []
    for i in range(1, count + 1):
        name = f"{i:04d}-mm-change-{i}.patch"
        (tmp_path / name).write_text(
            f"From 0 Mon Sep 17 00:00:00 2001\nSubject: [PATCH {i}/{count}] mm: change {i}\n\n"
            f"Why {i}.\n---\n mm/f{i}.c | 1 +\n\ndiff --git a/mm/f{i}.c b/mm/f{i}.c\n"
            f"--- a/mm/f{i}.c\n+++ b/mm/f{i}.c\n@@ -1 +1,2 @@\n int x;\n+int y{i};\n"
        )
        names.append(name)
    (tmp_path / "series").write_text("\n".join(names) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"kernel:\n  series: series\n  fragments: [{ROOT}/configs/kconfig/base.config]\n"
        "scenarios: []\n"
    )
    return runconfig.load(config)


def fake_runs(first_bad: int | None, tested: list[int]):  # type: ignore[no-untyped-def]
    def run_prefix(prefix: int) -> bisect.Step:
        tested.append(prefix)
        bad = first_bad is not None and prefix >= first_bad
        return bisect.Step(prefix, run.EXIT_FAIL if bad else run.EXIT_PASS, None)

    return run_prefix


@pytest.mark.parametrize("first_bad", [1, 5, 8, 12])
def test_finds_the_first_bad_patch_in_few_runs(
    tmp_path: Path, first_bad: int, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = series_config(tmp_path, 12)
    tested: list[int] = []
    code = bisect.bisect(cfg, tmp_path / "results", [], run_prefix=fake_runs(first_bad, tested))
    assert code == run.EXIT_FAIL
    assert tested[:2] == [12, 0]  # the whole series fails, the base passes
    assert len(tested) <= 2 + 4  # log2(12) more
    out = capsys.readouterr().out
    assert f"the first bad patch is {first_bad} of 12" in out
    assert f"Subject: [PATCH {first_bad}/12] mm: change {first_bad}" in out
    assert f"+int y{first_bad};" in out  # its diff
    summary = json.loads(next((tmp_path / "results").glob("*/bisect.json")).read_text())
    assert summary["first_bad"]["index"] == first_bad
    assert [s["prefix"] for s in summary["steps"]] == tested


def test_good_narrows_the_range(tmp_path: Path) -> None:
    cfg = series_config(tmp_path, 12)
    tested: list[int] = []
    assert bisect.bisect(cfg, tmp_path, [], good=10, run_prefix=fake_runs(11, tested)) == 1
    assert tested == [12, 10, 11]


def test_a_passing_series_has_nothing_to_find(tmp_path: Path) -> None:
    cfg = series_config(tmp_path, 3)
    tested: list[int] = []
    assert bisect.bisect(cfg, tmp_path, [], run_prefix=fake_runs(None, tested)) == 0
    assert tested == [3]


def test_a_bad_base_is_an_error_naming_good(tmp_path: Path) -> None:
    cfg = series_config(tmp_path, 3)
    with pytest.raises(HarnessError, match="--good N"):
        bisect.bisect(cfg, tmp_path, [], run_prefix=fake_runs(0, []))
    with pytest.raises(HarnessError, match="--good 3: must be"):
        bisect.bisect(cfg, tmp_path, [], good=3, run_prefix=fake_runs(0, []))
