"""`harness report RUN`: a finished run's results in the ecosystem's formats, again.

RUN is a results directory, a run id under --results, or 'latest'; a night's directory
(results/nightly/<date>, holding summary.json) gives its cells and the trend across nights.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness import report
from harness.errors import HarnessError
from harness.formats import cases, html, kcidb, write


def resolve(run: str, results_root: Path) -> Path:
    """A run directory from what the user typed: a path, or a name under the results root."""
    for candidate in (Path(run), results_root / run):
        if candidate.is_dir():
            return candidate.resolve()
    tried = " or ".join(dict.fromkeys(str(p) for p in (Path(run), results_root / run)))
    raise HarnessError(
        f"run '{run}': no such directory ({tried}); give a results directory, a run id "
        "under --results, or 'latest'"
    )


def main(run: str, results_root: Path, want_html: bool, want_kcidb: bool) -> int:
    run_dir = resolve(run, results_root)
    data = cases.load(run_dir)
    if want_kcidb:
        sys.stdout.write(kcidb.render(data, run_dir))
        return 0
    if want_html:
        print(write.write_one(html.write, run_dir, data))
        return 0
    for path in write.write_all(run_dir, data):
        print(path)
    print(f"{data.kind} run {data.run_id}: {data.verdict.upper()}")
    print(report.summary_table([
        {"name": c.name, "verdict": c.status, "reason": c.message} for c in data.cases
    ]))  # fmt: skip
    return 0
