"""The one shape every output format reads: a run report of cases, built from any command.

Every writer in harness/formats (ktap_out, junit, kcidb, html) takes a `RunReport` and
nothing else, so `harness run`, a selftests run, and campaigns (fuzz, mutate, nightly) share
them. A command that is not a scenario or selftests run builds its own report:

    from harness.formats import cases, write
    report = cases.RunReport(
        run_id="20261204-fuzz", kind="fuzz", verdict="fail", title="fuzz 200 programs",
        cases=[
            cases.Case("prog-0017", "fail", message="W: expected 2, observed 3",
                       console="...the console lines around the problem...",
                       subtests=[cases.Case("probe after-mremap", "fail", ...)],
                       values={"expected": {"W": 2}, "observed": {"W": 3}}),
            cases.Case("prog-0018", "pass"),
        ],
        kernels=[cases.Kernel(label="kernel", version="6.1.192", series_identity="...")])
    write.write_all(run_dir, report)       # results.ktap, junit.xml, kcidb.json, report.html

`Case` fields:
  name        unique among its siblings; free text (each format sanitises it its own way)
  status      one of STATUSES (below); the writers map it to each format's vocabulary
  message     one line: why the case is not a pass (empty for a pass)
  console     an excerpt of the console or the test's output (a few dozen lines at most)
  subtests    nested cases (a scenario's steps, probes and folio checks; a test's TAP cases)
  diagnostics extra lines shown with the case (the diff): KTAP '# ' lines, JUnit system-out
  values      JSON-able model-vs-kernel values ({"expected": {...}, "observed": {...}}):
              KCIDB test misc, and the HTML report's tables
  seconds     duration, when known
  kernel      label of the Kernel it ran on ('' = the report's first kernel)
  log         path of the full log, relative to the run directory

Status vocabulary and how each format says it:

  status       KTAP                      JUnit      KCIDB   meaning
  pass         ok                        (passed)   PASS
  fail         not ok                    failure    FAIL    the kernel differs from the model
  timeout      not ok                    failure    FAIL    a hang past its deadline
  crash        not ok                    failure    FAIL    the kernel died while it ran
  error        not ok # error            error      ERROR   the harness could not judge it
  environment  not ok # error            error      ERROR   an environmental deviation (a THP
                                                            fell back, khugepaged ran)
  skip         ok # SKIP                 skipped    SKIP    not applicable
  not-run      ok # SKIP not run         skipped    MISS    never started (an earlier death)

A night's trend charts take the nightly command's summaries, results/nightly/<date>/
summary.json, read by `load_nights`: {"date": "2026-12-04", "verdict": "pass",
"cells": [{"name": "series/thp-basic", "verdict": "pass", ...}, ...]} (a cell may say
"status" instead of "verdict"; cells may also be a {name: verdict} mapping).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

STATUSES = ("pass", "fail", "timeout", "crash", "error", "environment", "skip", "not-run")
FAILED = ("fail", "timeout", "crash")  # the tested code is at fault
ERRORED = ("error", "environment")  # nothing could be said about the tested code
SKIPPED = ("skip", "not-run")


@dataclass
class Case:
    """One judged thing: a scenario, a probe, a folio check, a selftest, a fuzz program."""

    name: str
    status: str
    message: str = ""
    console: str = ""
    subtests: list[Case] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    kernel: str = ""
    log: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"case {self.name!r}: status {self.status!r} not in {STATUSES}")

    def walk(self, parents: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Case]]:
        """This case and every subtest, each with the names leading to it."""
        here = (*parents, self.name)
        out = [(here, self)]
        for sub in self.subtests:
            out += sub.walk(here)
        return out


@dataclass
class Kernel:
    """One kernel a report's cases ran on: source, series and build identity."""

    label: str = "kernel"
    source: str = ""
    version: str = ""
    head: str = ""  # the source commit built (the harness's git import of the source)
    series: str | None = None
    series_identity: str | None = None
    patches: list[dict[str, str]] = field(default_factory=list)  # {"path", "sha256"}
    build_key: str = ""
    config: str = ""  # base config and fragments, e.g. "tinyconfig+base.config"
    config_sha256: str = ""
    toolchain: str = ""
    cached: bool | None = None
    build_seconds: float | None = None
    build_log: str | None = None  # relative to the run directory
    status: str = "pass"  # pass | fail (the build failed) | not-run


@dataclass
class RunReport:
    run_id: str
    kind: str  # scenarios | selftests | fuzz | mutate | nightly
    verdict: str
    cases: list[Case]
    title: str = ""
    error: str | None = None
    started: str | None = None  # ISO 8601 with a time zone
    seconds: float | None = None
    kernels: list[Kernel] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    scenarios: list[dict[str, Any]] = field(default_factory=list)  # results.json's, for pictures
    rmap_stats: dict[str, dict[str, int]] = field(default_factory=dict)  # series' rmap calls
    nights: list[dict[str, Any]] = field(default_factory=list)  # night summaries, for trends
    files: list[str] = field(default_factory=list)  # the run directory's files, for links

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for case in self.cases:
            out[case.status] = out.get(case.status, 0) + 1
        return out


# --- building a report from a run directory ------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such file (is this a results directory?)") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def load(run_dir: Path) -> RunReport:
    """The report of a results directory: a scenario run, a selftests run or a night."""
    if (run_dir / "summary.json").exists() and not (run_dir / "results.json").exists():
        return from_night(run_dir)
    results = _read_json(run_dir / "results.json")
    meta_path = run_dir / "metadata.json"
    metadata = _read_json(meta_path) if meta_path.exists() else {}
    return from_run(run_dir, results, metadata)


def from_run(run_dir: Path, results: dict[str, Any], metadata: dict[str, Any]) -> RunReport:
    """The report of a run from what its results.json and metadata.json hold (a run that
    has just written them passes the same data from memory: reading 10-20 MB of JSON back
    costs half a second)."""
    if results.get("selftests") is not None:
        report = from_selftests(results, metadata, run_dir)
    else:
        report = from_scenarios(results, metadata, run_dir)
    report.files = sorted(
        str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
        if p.is_file() and p.suffix in (".log", ".json", ".txt", ".sh", ".ktap", ".xml", ".html")
    )  # fmt: skip
    return report


def _kernel_from(results: dict[str, Any], metadata: dict[str, Any]) -> Kernel:
    k = results.get("kernel") or {}
    build = metadata.get("build") or {}
    inputs = metadata.get("inputs") or {}
    series = inputs.get("series") or {}
    fragments = [Path(f["path"]).name for f in inputs.get("fragments", [])]
    make = (build.get("seconds") or {}).get("make")
    return Kernel(
        label="kernel",
        source=k.get("source", ""),
        version=k.get("version", ""),
        head=k.get("head", "") or build.get("head", ""),
        series=k.get("series"),
        series_identity=k.get("series_identity"),
        patches=[
            {"path": Path(p["path"]).name, "sha256": p["sha256"]} for p in series.get("patches", [])
        ],
        build_key=k.get("build_key", ""),
        config="+".join(fragments),
        config_sha256=k.get("config_sha256", ""),
        toolchain=k.get("toolchain", ""),
        cached=k.get("cached"),
        # A cached kernel was built by an earlier run: this run's build phase took no time
        # worth reporting as the build's duration.
        build_seconds=None
        if k.get("cached")
        else (metadata.get("phase_seconds") or {}).get("build", make),
        build_log="build.log",
        status=_build_status(k, results.get("error")),
    )


def _build_status(kernel: dict[str, Any], error: str | None) -> str:
    """pass with a built (or cached) kernel; fail when the patches or make failed; not-run
    when the run stopped before the build ended (an interrupt, a bad config)."""
    if kernel.get("build_key"):
        return "pass"
    why = (error or "").lower()
    return "fail" if any(w in why for w in ("build failed", "patch", "kconfig")) else "not-run"


_SCENARIO_STATUS = {"pass": "pass", "fail": "fail", "environment": "environment", "error": "error",
                    "skipped": "skip"}  # fmt: skip


def from_scenarios(
    results: dict[str, Any], metadata: dict[str, Any], run_dir: Path | None = None
) -> RunReport:
    """A scenario run: one case per scenario, with its steps, probes and folio checks."""
    console = _console_lines(run_dir / "console.log") if run_dir else []
    cases = [_scenario_case(s, console) for s in results.get("scenarios", [])]
    if not cases and results.get("error"):
        # Stopped before any scenario was judged (a build failure, an interrupt): one case
        # says so, so a CI page shows an error rather than an empty, green suite.
        cases = [Case("run", "error", message=results["error"])]
    return RunReport(
        run_id=results.get("run_id", ""),
        kind="scenarios",
        verdict=results.get("verdict", "error"),
        error=results.get("error"),
        cases=cases,
        title=results.get("config", ""),
        started=metadata.get("started"),
        seconds=metadata.get("wall_seconds"),
        kernels=[_kernel_from(results, metadata)],
        machine=results.get("machine") or {},
        scenarios=results.get("scenarios", []),
        rmap_stats=results.get("rmap_stats") or {},
    )


def _console_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return path.read_bytes().decode(errors="replace").splitlines()


def console_excerpt(lines: list[str], job: str, limit: int = 40) -> str:
    """The console lines a job printed, between the guest's begin and end marks (its last
    `limit` lines: a splat ends the job's output, so the end is the telling part)."""
    begin, end = f"@@HARNESS-BEGIN {job}", f"@@HARNESS-END {job} "
    out: list[str] = []
    inside = False
    for line in lines:
        if line.rstrip().endswith(begin):
            inside, out = True, []
            continue
        if inside and end in line:
            out.append(line)
            break
        if inside:
            out.append(line)
    return "\n".join(out[-limit:])


def _scenario_case(s: dict[str, Any], console: list[str]) -> Case:
    steps = s.get("steps") or []
    step_cases = [
        Case(
            f"step {st['index']} {st['op']}",
            "pass" if st.get("errno") == st.get("expected_errno") else "fail",
            message=(
                "" if st.get("errno") == st.get("expected_errno")
                else f"expected {st.get('expected_errno') or 'success'}, "
                     f"got {st.get('errno') or 'success'}"
            ),
            values={"where": st.get("where"), "expected": st.get("expected_errno"),
                    "observed": st.get("errno")},
        )
        for st in steps
    ]  # fmt: skip
    subtests: list[Case] = []
    if step_cases:
        bad = [c for c in step_cases if c.status != "pass"]
        subtests.append(
            Case("steps", "fail" if bad else "pass",
                 message="; ".join(f"{c.name}: {c.message}" for c in bad), subtests=step_cases)
        )  # fmt: skip
    for probe in s.get("probes") or []:
        subtests.append(_probe_case(probe))
    for recall in s.get("recalls") or []:
        subtests.append(Case(
            f"recall {recall['label']}", "pass" if recall.get("verdict") == "pass" else "fail",
            message=(recall.get("diff") or "").strip(),
            values={"expected": recall.get("expected"), "observed": recall.get("observed")},
        ))  # fmt: skip
    status = _SCENARIO_STATUS.get(s.get("verdict", "error"), "error")
    values: dict[str, Any] = {}
    if s.get("environment"):
        values["environment"] = s["environment"]
    if s.get("rmap"):
        values["rmap"] = s["rmap"]  # the series' rmap calls and pages during the scenario
    return Case(
        s["name"],
        status,
        message=s.get("reason") or "",
        console=console_excerpt(console, s["name"]) if status != "pass" else "",
        subtests=subtests,
        diagnostics=(s.get("diff") or "").splitlines(),
        values=values,
    )


def probe_name(probe: dict[str, Any]) -> str:
    return f"probe {probe['label']} ({probe['process']})"


def folio_name(folio: dict[str, Any]) -> str:
    return f"folio {folio['process']} {folio['va']} order {folio['order']}"


def _probe_case(probe: dict[str, Any]) -> Case:
    folios = [
        Case(
            folio_name(f),
            _SCENARIO_STATUS.get(f.get("verdict", "error"), "error"),
            message="; ".join(f.get("problems") or []),
            values={"expected": f.get("expected"), "observed": f.get("observed")},
        )
        for f in probe.get("folios") or []
    ]
    return Case(
        probe_name(probe),
        _SCENARIO_STATUS.get(probe.get("verdict", "error"), "error"),
        message="; ".join(probe.get("problems") or []),
        subtests=folios,
        values={"where": probe.get("where")},
    )


_SELFTEST_STATUS = {"pass": "pass", "fail": "fail", "skip": "skip", "timeout": "timeout",
                    "crash": "crash", "not-run": "not-run"}  # fmt: skip


def _tap_cases(cases: list[dict[str, Any]]) -> list[Case]:
    """A selftest's parsed TAP cases (ktap.Case.to_json) as subtests."""
    out = []
    for i, c in enumerate(cases, 1):
        status = {"pass": "pass", "skip": "skip", "xfail": "pass", "error": "error"}.get(
            str(c.get("status")), "fail"
        )
        name = str(c.get("description") or f"test {c.get('number') or i}")
        out.append(Case(name, status, message=str(c.get("reason") or ""),
                        subtests=_tap_cases(c.get("subtests") or [])))  # fmt: skip
    return out


def _output_tail(run_dir: Path | None, rel: str | None, limit: int = 40) -> str:
    """The last lines a test printed (its tests/<name>.log), for a case that did not pass."""
    if run_dir is None or not rel or not (run_dir / rel).is_file():
        return ""
    lines = (run_dir / rel).read_bytes().decode(errors="replace").splitlines()
    return "\n".join(lines[-limit:])


def _test_case(r: dict[str, Any], kernel: str, run_dir: Path | None = None) -> Case:
    status = _SELFTEST_STATUS.get(r.get("outcome", ""), "error")
    return Case(
        r["name"] if not kernel else f"{r['name']} ({kernel})",
        status,
        message=r.get("reason") or "",
        console=_output_tail(run_dir, r.get("output")) if status not in ("pass", "skip") else "",
        subtests=_tap_cases(r.get("cases") or []),
        seconds=r.get("seconds"),
        kernel=kernel,
        log=r.get("output"),
        values={"program": r.get("program"), "args": r.get("args"), "status": r.get("status"),
                "counts": r.get("counts")},
        diagnostics=list(r.get("splats") or []),
    )  # fmt: skip


def from_selftests(
    results: dict[str, Any], metadata: dict[str, Any], run_dir: Path | None = None
) -> RunReport:
    """A selftests run: one case per test; in compare mode one per test with the baseline's
    and the patched kernel's runs as its subtests, failed when it is a regression."""
    st = results["selftests"]
    kernels = []
    per_kernel: dict[str, dict[str, dict[str, Any]]] = {}
    for label, rec in (st.get("kernels") or {}).items():
        b = rec.get("build") or {}
        kernels.append(Kernel(
            label=label, source=(results.get("kernel") or {}).get("source", ""),
            head=b.get("head", ""), series=rec.get("series"),
            series_identity=rec.get("series_identity"), build_key=b.get("key", ""),
            config="+".join(Path(f).name for f in rec.get("fragments", [])),
            config_sha256=b.get("config_sha256", ""), toolchain=b.get("toolchain", ""),
            cached=b.get("cached"),
            build_seconds=None if b.get("cached") else sum((b.get("seconds") or {}).values()),
            build_log=f"{label}/build.log", status="pass" if b else "fail",
        ))  # fmt: skip
        per_kernel[label] = {r["name"]: r for r in rec.get("results") or []}
    cases: list[Case] = []
    if st.get("mode") == "compare":
        for pair in st.get("table") or []:
            subs = [_test_case(per_kernel[k][pair["name"]], k, run_dir)
                    for k in per_kernel if pair["name"] in per_kernel[k]]  # fmt: skip
            regression = pair.get("change") == "regression"
            cases.append(Case(
                pair["name"], "fail" if regression else "pass",
                message=(f"regression: {pair['baseline']} unpatched, {pair['patched']} patched"
                         + (f" ({pair['patched_reason']})" if pair.get("patched_reason") else "")
                         if regression else ""),
                subtests=subs, kernel=list(per_kernel)[-1] if per_kernel else "",
                values={"change": pair.get("change"),
                                       "baseline": pair.get("baseline"),
                                       "patched": pair.get("patched")},
            ))  # fmt: skip
    else:
        for r in st.get("table") or []:
            label = next(iter(per_kernel), "kernel")
            cases.append(_test_case(per_kernel.get(label, {}).get(r["name"], r), "", run_dir))
    if not cases and results.get("error"):
        cases = [Case("run", "error", message=results["error"])]
    return RunReport(
        run_id=results.get("run_id", ""), kind="selftests", verdict=results.get("verdict", "error"),
        error=results.get("error"), cases=cases, title=results.get("config", ""),
        started=metadata.get("started"), seconds=metadata.get("wall_seconds"), kernels=kernels,
        machine=results.get("machine") or {},
    )  # fmt: skip


# --- nights --------------------------------------------------------------------------------


def _night_cells(summary: dict[str, Any]) -> list[dict[str, Any]]:
    cells = summary.get("cells") or []
    if isinstance(cells, dict):
        return [{"name": k, "verdict": v if isinstance(v, str) else v.get("verdict", "error")}
                for k, v in cells.items()]  # fmt: skip
    out = []
    for i, c in enumerate(cells):
        if isinstance(c, dict):
            verdict = c.get("verdict") or c.get("status") or "error"
            out.append({**c, "name": str(c.get("name") or f"cell-{i}"), "verdict": str(verdict)})
    return out


def load_nights(root: Path) -> list[dict[str, Any]]:
    """Every night under results/nightly/ (each <date>/summary.json), oldest first, each as
    {"date", "verdict", "cells": [{"name", "verdict", ...}]}; unreadable ones are skipped
    with their reason kept, so one broken night does not hide the trend."""
    nights = []
    for path in sorted(root.glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            nights.append({"date": path.parent.name, "verdict": "error", "cells": [],
                           "problem": f"{path}: {exc}"})  # fmt: skip
            continue
        nights.append({
            "date": str(summary.get("date") or path.parent.name),
            "verdict": str(summary.get("verdict") or "error"),
            "cells": _night_cells(summary),
            "dir": str(path.parent),
        })  # fmt: skip
    return nights


_CELL_STATUS = {**_SELFTEST_STATUS, "environment": "environment", "error": "error",
                "regression": "fail", "found": "fail"}  # fmt: skip


def from_night(night_dir: Path) -> RunReport:
    """A night: its cells as cases, and every night beside it for the trend charts."""
    summary = _read_json(night_dir / "summary.json")
    cells = _night_cells(summary)
    cases = [
        Case(c["name"], _CELL_STATUS.get(c["verdict"], "error"),
             message=str(c.get("reason") or c.get("message") or ""),
             log=c.get("run") or c.get("results"))
        for c in cells
    ]  # fmt: skip
    return RunReport(
        run_id=f"nightly-{summary.get('date') or night_dir.name}", kind="nightly",
        verdict=str(summary.get("verdict") or "error"), cases=cases,
        title=f"night of {summary.get('date') or night_dir.name}",
        started=summary.get("started"), seconds=summary.get("seconds"),
        nights=load_nights(night_dir.parent),
    )  # fmt: skip
