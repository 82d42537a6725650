"""Judging scenarios while the guest runs (harness/early_judge.py), on real records
(tests/data/records/lifecycle.log, eight scenarios of an unpatched 6.1 run of
configs/thp.yaml) written to the data log in pieces, as QEMU would."""

from __future__ import annotations

import time
from pathlib import Path

from harness import compare, early_judge, model, records, runconfig
from harness.console import ConsoleReport, Splat
from harness.machine import BootResult

ROOT = Path(__file__).resolve().parent.parent
LOG = Path(__file__).parent / "data" / "records" / "lifecycle.log"


def _scenarios_and_predictions():  # type: ignore[no-untyped-def]
    cfg = runconfig.load(ROOT / "configs" / "thp.yaml")
    names = [r.name for r in records.parse_records(LOG.read_text().splitlines()).scenarios]
    scenarios = [s for s in cfg.scenarios if s.name in names]
    return scenarios, {s.name: model.predict(s) for s in scenarios}


def _judged_after_the_end(scenarios, predictions, console: ConsoleReport):  # type: ignore[no-untyped-def]
    parsed = records.parse_records(LOG.read_text().splitlines())
    by_name = {r.name: r for r in parsed.scenarios}
    booted = BootResult(console, "done")
    return [
        compare.judge(s, by_name.get(s.name), console, booted, predictions[s.name]).to_json()
        for s in scenarios
    ]


def _wait_for(judge: early_judge.EarlyJudge, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(judge.judged_early) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_verdicts_made_during_the_boot_equal_those_made_after_it(tmp_path: Path) -> None:
    scenarios, predictions = _scenarios_and_predictions()
    text = LOG.read_text()
    # Cut the stream after the third scenario's end and in the middle of a line of the
    # fourth: only complete scenarios are judged early.
    third_end = text.index("\n", text.index("@ENDSCENARIO", text.index("@ENDSCENARIO",
                           text.index("@ENDSCENARIO") + 1) + 1)) + 1  # fmt: skip
    data_log = tmp_path / "data.log"
    data_log.write_text(text[: third_end + 40])
    judge = early_judge.EarlyJudge(scenarios, predictions, data_log)
    judge.scenario_ended()
    _wait_for(judge, 3)
    assert len(judge.judged_early) == 3
    data_log.write_text(text)  # the rest of the boot
    console = ConsoleReport()
    assert judge.final(console, BootResult(console, "done")) == _judged_after_the_end(
        scenarios, predictions, console
    )


def test_a_splat_in_a_scenario_has_it_judged_again_with_the_console(tmp_path: Path) -> None:
    scenarios, predictions = _scenarios_and_predictions()
    data_log = tmp_path / "data.log"
    data_log.write_text(LOG.read_text())
    judge = early_judge.EarlyJudge(scenarios, predictions, data_log)
    judge.scenario_ended()
    _wait_for(judge, len(scenarios))
    assert len(judge.judged_early) == len(scenarios)
    victim = scenarios[1].name
    console = ConsoleReport(splats=[Splat("warning", victim, 42, "WARNING: at mm/rmap.c:1234")])
    verdicts = {v["name"]: v for v in judge.final(console, BootResult(console, "done"))}
    assert verdicts[victim]["verdict"] == "error"  # the kernel misbehaved in it
    assert "WARNING: at mm/rmap.c:1234" in verdicts[victim]["reason"]
    assert verdicts == {
        v["name"]: v for v in _judged_after_the_end(scenarios, predictions, console)
    }
