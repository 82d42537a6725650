"""The one entry point that writes every format of a run: KTAP, JUnit, KCIDB and HTML."""

from __future__ import annotations

from pathlib import Path

from harness.formats import cases, html, junit, kcidb, ktap_out
from harness.formats.cases import RunReport

WRITERS = (ktap_out.write, junit.write, kcidb.write, html.write)


def write_all(run_dir: Path, report: RunReport | None = None) -> list[Path]:
    """Write results.ktap, junit.xml, kcidb.json and report.html into run_dir.

    Without a report, it is read from run_dir's results.json and metadata.json (a scenario
    or selftests run); campaigns pass the RunReport they built (see cases.py). Each file is
    written atomically, so a reader never sees half of one.
    """
    report = report or cases.load(run_dir)
    return [writer(run_dir, report) for writer in WRITERS]
