"""KTAP version 1 writer: one test per case, nested subtests, diagnostics as '# ' lines.

The layout is the kernel's (Documentation/dev-tools/ktap.rst), as 6.1's KUnit prints it: a
nested test list is indented four spaces, opens with 'KTAP version 1' and '# Subtest: name',
and is closed by its parent's result line; harness/ktap.py reads it back.
"""

from __future__ import annotations

from pathlib import Path

from harness import cache
from harness.formats.cases import Case, RunReport

INDENT = "    "


def _clean(text: str) -> str:
    """One KTAP-safe line: '#' starts a directive, so it cannot appear in a name."""
    return " ".join(text.replace("#", "").split())


def _result_line(number: int, case: Case) -> str:
    name = _clean(case.name) or f"case {number}"
    first = _clean(case.message.splitlines()[0]) if case.message else ""
    if case.status == "pass":
        return f"ok {number} {name}"
    if case.status == "skip":
        return f"ok {number} {name} # SKIP {first}".rstrip()
    if case.status == "not-run":
        return f"ok {number} {name} # SKIP not run" + (f": {first}" if first else "")
    if case.status in ("error", "environment"):
        why = f"{case.status}: {first}" if case.status == "environment" else first
        return f"not ok {number} {name} # error {why}".rstrip()
    return f"not ok {number} {name}"


def _diagnostics(case: Case) -> list[str]:
    lines = []
    if case.status not in ("pass", "skip") and case.message:
        lines += [f"{case.status}: {line}" for line in case.message.splitlines()]
    lines += case.diagnostics
    return [f"# {line}".rstrip() for line in lines if line.strip()]


def _case_lines(number: int, case: Case, depth: int) -> list[str]:
    pad = INDENT * depth
    lines: list[str] = []
    inner = pad + INDENT
    if case.subtests:
        lines += [f"{inner}KTAP version 1", f"{inner}# Subtest: {_clean(case.name)}",
                  f"{inner}1..{len(case.subtests)}"]  # fmt: skip
        for i, sub in enumerate(case.subtests, 1):
            lines += _case_lines(i, sub, depth + 1)
        lines += [inner + d for d in _diagnostics(case)]
    else:
        lines += [pad + d for d in _diagnostics(case)]
    lines.append(pad + _result_line(number, case))
    return lines


def render(report: RunReport) -> str:
    lines = ["KTAP version 1", f"# folio-harness {report.kind} run {report.run_id}",
             f"1..{len(report.cases)}"]  # fmt: skip
    for i, case in enumerate(report.cases, 1):
        lines += _case_lines(i, case, 0)
    counts = report.counts()
    lines.append(
        "# Totals: "
        + " ".join(
            f"{k}:{v}"
            for k, v in (
                ("pass", counts.get("pass", 0)),
                ("fail", sum(counts.get(s, 0) for s in ("fail", "timeout", "crash"))),
                ("xfail", 0),
                ("xpass", 0),
                ("skip", counts.get("skip", 0) + counts.get("not-run", 0)),
                ("error", counts.get("error", 0) + counts.get("environment", 0)),
            )
        )
    )
    if report.error:
        lines.append(f"# run error: {_clean(report.error)}")
    return "\n".join(lines) + "\n"


def write(run_dir: Path, report: RunReport) -> Path:
    path = run_dir / "results.ktap"
    cache.write_atomic(path, render(report))
    return path
