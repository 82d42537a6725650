"""Judging each scenario as soon as its records are complete, while the guest runs the next.

A run's comparison used to start when QEMU exited: parse the whole data channel, then judge
every scenario, a third of a second of the harness's own time after a 13 s boot of 89
scenarios. The guest writes each scenario's records before /init marks the scenario's end
on the console, so a thread can follow the data log and judge scenario k while the guest
runs scenario k+1. What it cannot know yet is the console: a judgement made early holds
only if the console, once the boot is over, shows no splat and no OOM kill in that
scenario; `final()` judges those again with everything (and any scenario whose records
were not complete in time).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import compare, model, records, workload
from harness.console import ConsoleReport
from harness.machine import BootResult

# What an early judgement sees of the boot: nothing yet. judge() reads the boot only for a
# scenario without records, which is never judged early.
_NO_CONSOLE = ConsoleReport()
_NOT_OVER = BootResult(report=_NO_CONSOLE, outcome="running")


class EarlyJudge:
    """Follows `data_log` in a thread; `scenario_ended()` from the console hook wakes it."""

    def __init__(self, scenarios: list[workload.Scenario],
                 predictions: Mapping[str, model.ModelResult], data_log: Path) -> None:  # fmt: skip
        self._scenarios = {sc.name: sc for sc in scenarios}
        self._predictions = predictions
        self._data_log = data_log
        self._offset = 0
        self._partial = b""
        self.parser = records.RecordParser()
        self._judged: dict[str, dict[str, Any]] = {}
        self._failure: BaseException | None = None
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._follow, name="early-judge", daemon=True)
        self._thread.start()

    @property
    def judged_early(self) -> list[str]:
        """The scenarios judged so far, while the guest was still running."""
        return list(self._judged)

    def scenario_ended(self) -> None:
        self._wake.set()

    def _follow(self) -> None:
        try:
            while not self._stop:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                self._read_new_records()
                self._judge_complete()
        except BaseException as exc:  # judged again at the end, where it is reported
            self._failure = exc

    def _read_new_records(self) -> None:
        try:
            with self._data_log.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1  # whole lines only: the guest may be mid-line
        self._partial = data[cut:]
        for line in data[:cut].decode(errors="replace").splitlines():
            self.parser.feed(line)

    def _judge_complete(self) -> None:
        for recs in list(self.parser.scenarios):
            sc = self._scenarios.get(recs.name)
            if sc is None or not recs.complete or recs.name in self._judged:
                continue
            verdict = compare.judge(sc, recs, _NO_CONSOLE, _NOT_OVER, self._predictions[sc.name])
            self._judged[recs.name] = verdict.to_json()

    def final(self, console: ConsoleReport, booted: BootResult) -> list[dict[str, Any]]:
        """Every scenario's verdict (as JSON), in the config's order, once the boot is over."""
        self._stop = True
        self._wake.set()
        self._thread.join()
        if self._failure is not None:
            self._judged.clear()  # start again from scratch; a real error will recur below
            self._offset, self._partial, self.parser = 0, b"", records.RecordParser()
        self._read_new_records()
        if self._partial:  # the last line had no newline: the stream ended inside it
            self.parser.feed(self._partial.decode(errors="replace"))
            self._partial = b""
        troubled = {s.job for s in console.splats} | {job for job, _ in console.oom_kills}
        by_name: dict[str, records.ScenarioRecords] = {}
        for recs in self.parser.scenarios:
            by_name.setdefault(recs.name, recs)  # the first, as an early judgement takes
        verdicts = []
        for name, sc in self._scenarios.items():
            early = self._judged.get(name)
            if early is not None and name not in troubled:
                verdicts.append(early)
                continue
            verdict = compare.judge(sc, by_name.get(name), console, booted, self._predictions[name])
            verdicts.append(verdict.to_json())
        return verdicts
