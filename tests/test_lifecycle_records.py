"""Real guest records (tests/data/records/lifecycle.log, an unpatched 6.1 run of
configs/thp.yaml) judged against the model: recall states, deferred-split events,
second opens, skipped knobs, and what a wrong prediction of each looks like."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness import compare, model, records, runconfig, workload
from harness.console import ConsoleReport
from harness.machine import BootResult

ROOT = Path(__file__).resolve().parent.parent
LOG = Path(__file__).parent / "data" / "records" / "lifecycle.log"


@pytest.fixture(scope="module")
def scenarios() -> dict[str, workload.Scenario]:
    cfg = runconfig.load(ROOT / "configs" / "thp.yaml")
    return {s.name: s for s in cfg.scenarios}


@pytest.fixture(scope="module")
def observed() -> dict[str, records.ScenarioRecords]:
    parsed = records.parse_records(LOG.read_text().splitlines())
    return {r.name: r for r in parsed.scenarios}


def judge(scenario: workload.Scenario, recs: records.ScenarioRecords,
          prediction: model.ModelResult) -> compare.ScenarioVerdict:  # fmt: skip
    console = ConsoleReport()
    return compare.judge(scenario, recs, console, BootResult(console, "done"), prediction)


def test_every_captured_scenario_matches_the_model(scenarios, observed) -> None:  # type: ignore[no-untyped-def]
    verdicts = {n: judge(scenarios[n], r, model.predict(scenarios[n])) for n, r in observed.items()}
    assert {n: v.verdict for n, v in verdicts.items()} == {
        "anon-thp-debugfs-split": "pass", "fa-misaligned-1m-64k": "pass",
        "fa-whole-misaligned-page": "skipped", "deferred-split-after-fork-drop-caches": "pass",
        "two-opens-do-not-merge": "pass", "recall-anon-freed": "pass",
        "recall-shmem-cached": "pass", "recall-shmem-split-by-punch": "pass",
    }  # fmt: skip
    assert "fault_around_whole_folio" in (verdicts["fa-whole-misaligned-page"].reason or "")


def test_recall_states_read_from_pfn_facts(observed) -> None:  # type: ignore[no-untyped-def]
    split = observed["deferred-split-after-fork-drop-caches"].recalls["head-after-split"]
    assert (split.order, split.now_order, split.state(was_anon=True)) == (9, 0, "split")
    assert split.mapped_pages == 256 and split.resident_pages is None
    gone = observed["recall-anon-freed"].recalls["gone"]
    assert gone.state(was_anon=True) == "freed"
    cached = observed["recall-shmem-cached"].recalls["cached"]
    assert cached.mapped_pages == 0 and cached.resident_pages == 512
    assert cached.state(was_anon=False) == "cached"
    # The same facts read as an anon folio's: residency does not count, nothing maps it.
    assert cached.state(was_anon=True) == "freed"  # ANON flag absent: reused, not ours


def test_a_wrong_recall_prediction_fails(scenarios, observed) -> None:  # type: ignore[no-untyped-def]
    name = "recall-shmem-split-by-punch"
    wrong = dataclasses.replace(model.predict(scenarios[name]), recalls={"split": "cached"})
    verdict = judge(scenarios[name], observed[name], wrong)
    assert verdict.verdict == "fail"
    assert "recall 'split' of probe 'mapped'" in verdict.diff
    assert "expected cached, observed split" in verdict.diff


def test_deferred_split_events_are_checked_not_environment(scenarios, observed) -> None:  # type: ignore[no-untyped-def]
    name = "deferred-split-after-fork-drop-caches"
    right = model.predict(scenarios[name])
    assert right.events == {"thp_deferred_split_page": 1, "thp_split_page": 1}
    # A model that did not queue the folio (the bug issue 12 describes) is a FAIL now.
    wrong = dataclasses.replace(right, events={})
    verdict = judge(scenarios[name], observed[name], wrong)
    assert verdict.verdict == "fail" and verdict.environment == []
    assert "thp_split_page: the model predicts +0, the kernel counted +1" in verdict.diff


def test_two_opens_are_two_vmas_in_the_guest(observed) -> None:  # type: ignore[no-untyped-def]
    lo, hi = observed["two-opens-do-not-merge"].probes
    assert len(lo.vmas) == 1 and lo.vmas[0].end - lo.vmas[0].start == 1 << 20
    assert lo.vmas[0].pmd_mapped_kb == 0 and hi.vmas[0].start == lo.vmas[0].end


def test_running_out_of_memory_is_environment_and_the_diff_is_short() -> None:
    cfg = runconfig.load(ROOT / "configs" / "limits.yaml")
    (scenario,) = cfg.scenarios
    log = Path(__file__).parent / "data" / "records" / "limits.log"
    (recs,) = records.parse_records(log.read_text().splitlines()).scenarios
    verdict = judge(scenario, recs, model.predict(scenario))
    assert verdict.verdict == "environment"
    assert "step 1 mmap" in (verdict.reason or "") and "raise machine.memory" in (
        verdict.reason or ""
    )
    assert "512 folios at 0x100000000000-0x100000200000 (512 pages)" in verdict.diff
    assert len(verdict.diff.splitlines()) < 12
