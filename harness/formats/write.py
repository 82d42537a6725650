"""The one entry point that writes every format of a run: KTAP, JUnit, KCIDB and HTML."""

from __future__ import annotations

import os
from collections.abc import Callable
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
    return [write_one(writer, run_dir, report) for writer in WRITERS]


def write_one(writer: Callable[[Path, RunReport], Path], run_dir: Path,
              report: RunReport) -> Path:  # fmt: skip
    """One format; readable as the umask says (atomic writes start as mkstemp's 0600), for
    these files are meant to be shared: served, attached, uploaded."""
    path = writer(run_dir, report)
    mask = os.umask(0)
    os.umask(mask)
    path.chmod(0o666 & ~mask)
    return path
