"""JUnit XML writer (junitparser): one testcase per top-level case, for CI servers.

A failure carries the case's message and, as its text, the failing subtests; system-out
holds the console excerpt and the diagnostics (the diff), so a CI page shows why without
opening the run directory.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from harness import cache
from harness.formats.cases import ERRORED, FAILED, SKIPPED, Case, RunReport

# XML 1.0 cannot hold most control characters; a console excerpt can.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("?", text)


def _failing_leaves(case: Case, depth: int = 0) -> list[str]:
    """The subtests that are not a pass, indented as they nest, with their messages."""
    lines = []
    for sub in case.subtests:
        if sub.status in ("pass", "skip"):
            continue
        why = f": {sub.message}" if sub.message else ""
        lines.append(f"{'  ' * depth}{sub.name}: {sub.status.upper()}{why}")
        lines += _failing_leaves(sub, depth + 1)
    return lines


def _testcase(case: Case, classname: str) -> TestCase:
    tc = TestCase(case.name, classname=classname, time=case.seconds or 0.0)
    detail = "\n".join(_failing_leaves(case))
    message = _xml_text(case.message or case.status)
    if case.status in FAILED:
        result = Failure(message, type_=case.status)
    elif case.status in ERRORED:
        result = Error(message, type_=case.status)
    elif case.status in SKIPPED:
        result = Skipped(_xml_text(case.message or case.status), type_=case.status)
    else:
        result = None
    if result is not None:
        if detail:
            result.text = _xml_text(detail)
        tc.result = [result]
    out = []
    if case.console:
        out += ["console:", case.console]
    if case.diagnostics:
        out += ["diff:", *case.diagnostics]
    if case.log:
        out.append(f"full log: {case.log}")
    if out:
        tc.system_out = _xml_text("\n".join(out))
    return tc


def render(report: RunReport) -> str:
    suite = TestSuite(f"folio-harness.{report.kind}.{report.run_id}")
    if report.started:
        suite.timestamp = report.started
    suite.add_property("verdict", report.verdict)
    if report.error:
        suite.add_property("error", _xml_text(report.error))
    for kernel in report.kernels:
        what = f"Linux {kernel.version}".strip() + (f" + {kernel.series}" if kernel.series else "")
        suite.add_property(f"kernel.{kernel.label}", what)
        if kernel.build_key:
            suite.add_property(f"kernel.{kernel.label}.build", kernel.build_key)
    classname = f"folio-harness.{report.kind}"
    for case in report.cases:
        suite.add_testcase(_testcase(case, classname))
    suite.update_statistics()
    if report.seconds is not None:
        suite.time = report.seconds
    xml = JUnitXml("folio-harness")
    xml.add_testsuite(suite)
    xml.update_statistics()
    buf = io.BytesIO()
    xml.write(buf, pretty=True)
    return buf.getvalue().decode()


def write(run_dir: Path, report: RunReport) -> Path:
    path = run_dir / "junit.xml"
    cache.write_atomic(path, render(report))
    return path
