"""The output formats on captured runs: KTAP read back by harness/ktap.py, JUnit read back
by junitparser, KCIDB validated by kcidb-io's own schema, the HTML page's structure, the
generic case API the campaigns use, `harness report` and `harness diff`, and progress.

tests/data/results/ holds trimmed copies of real runs (see its README): thp (the unpatched
kernel: W unobservable) and series (the kernel series: T, E, W and the rmap audit).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import kcidb_io
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

# The selftests run's and the recorded run's fixtures, shared with their own test modules.
from test_run_fake_machine import fake_kernel  # noqa: F401
from test_selftests import calls, fakes  # noqa: F401

from harness import build, cli, ktap, report, run
from harness.formats import cases, html, junit, kcidb, ktap_out, write

DATA = Path(__file__).parent / "data" / "results"


@pytest.fixture(params=["thp", "series"])
def captured(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A writable copy of a captured run directory."""
    run_dir = tmp_path / request.param
    shutil.copytree(DATA / request.param, run_dir)
    return run_dir


def _results(run_dir: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((run_dir / "results.json").read_text())


# --- KTAP ----------------------------------------------------------------------------------


def test_ktap_reads_back_with_every_scenario_probe_and_folio(captured: Path) -> None:
    write.write_all(captured)
    results = _results(captured)
    stream = ktap.parse((captured / "results.ktap").read_text().splitlines())
    assert stream.version == "KTAP 1"
    assert stream.plan == len(results["scenarios"]) == len(stream.cases)
    want_status = {"pass": "pass", "fail": "fail", "error": "error", "environment": "error",
                   "skipped": "skip"}  # fmt: skip
    for case, scenario in zip(stream.cases, results["scenarios"], strict=True):
        assert case.description == scenario["name"]
        assert case.status == want_status[scenario["verdict"]]
        probes = [c for c in case.subtests if c.description.startswith("probe ")]
        assert [p.description for p in probes] == [
            cases.probe_name(p) for p in scenario["probes"]
        ]
        for probe_case, probe in zip(probes, scenario["probes"], strict=True):
            assert len(probe_case.subtests) == len(probe["folios"])
            for folio_case, folio in zip(probe_case.subtests, probe["folios"], strict=True):
                assert folio_case.description == cases.folio_name(folio)
                assert folio_case.status == want_status[folio["verdict"]]
        steps = [c for c in case.subtests if c.description == "steps"]
        assert [len(c.subtests) for c in steps] == ([len(scenario["steps"])]
                                                    if scenario["steps"] else [])  # fmt: skip
        recalls = [c for c in case.subtests if c.description.startswith("recall ")]
        assert [(c.description, c.status) for c in recalls] == [
            (f"recall {r['label']}", r["verdict"]) for r in scenario.get("recalls", [])
        ]  # fmt: skip
    counts = {v: sum(1 for s in results["scenarios"] if s["verdict"] == v) for v in want_status}
    assert stream.totals["pass"] == counts["pass"]
    assert stream.totals["fail"] == counts["fail"]


def test_ktap_of_failing_cases_carries_diagnostics_and_directives() -> None:
    report_ = cases.RunReport("r1", "fuzz", "fail", [
        cases.Case("prog-1", "fail", message="W: expected 2, observed 3",
                   diagnostics=["probe 'x' of main: FAIL", "  W: expected 2, observed 3"],
                   subtests=[cases.Case("probe x", "fail", message="W differs")]),
        cases.Case("prog-2", "environment", message="thp_fault_fallback +1"),
        cases.Case("prog-3 # not a directive", "skip", message="no THP"),
        cases.Case("prog-4", "not-run", message="guest died"),
        cases.Case("prog-5", "pass"),
    ])  # fmt: skip
    text = ktap_out.render(report_)
    stream = ktap.parse(text.splitlines())
    assert [c.status for c in stream.cases] == ["fail", "error", "skip", "skip", "pass"]
    assert stream.cases[0].subtests[0].description == "probe x"
    assert stream.cases[1].reason == "environment: thp_fault_fallback +1"
    assert stream.cases[2].description == "prog-3 not a directive"
    assert stream.cases[3].reason == "not run: guest died"
    assert "    #   W: expected 2, observed 3" in text.splitlines()
    assert stream.totals == {"pass": 1, "fail": 1, "xfail": 0, "xpass": 0, "skip": 2, "error": 1}


def test_ktap_subtest_names_in_either_order() -> None:
    # KUnit (6.1) names a nested list after its version line; older output before it. A
    # result line without a description takes the nested list's name either way.
    kunit = ["KTAP version 1", "1..2", "    KTAP version 1", "    # Subtest: suite_a",
             "    1..1", "    ok 1 case", "ok 1", "    # Subtest: suite_b",
             "    KTAP version 1", "    1..1", "    not ok 1 case", "not ok 2"]  # fmt: skip
    stream = ktap.parse(kunit)
    assert [(c.description, c.status) for c in stream.cases] == [
        ("suite_a", "pass"), ("suite_b", "fail")
    ]  # fmt: skip


# --- JUnit ---------------------------------------------------------------------------------


def test_junit_has_one_testcase_per_scenario(captured: Path) -> None:
    write.write_all(captured)
    results = _results(captured)
    xml = JUnitXml.fromfile(str(captured / "junit.xml"))
    (suite,) = list(xml)
    tcs = list(suite)
    assert [tc.name for tc in tcs] == [s["name"] for s in results["scenarios"]]
    for tc, scenario in zip(tcs, results["scenarios"], strict=True):
        kinds = {type(r) for r in tc.result}
        if scenario["verdict"] == "pass":
            assert tc.is_passed
        elif scenario["verdict"] == "skipped":
            assert kinds == {Skipped} and tc.result[0].message == scenario["reason"]
        elif scenario["verdict"] == "fail":
            assert kinds == {Failure} and tc.result[0].message == scenario["reason"]
        else:
            assert kinds == {Error}
    assert suite.tests == len(tcs)
    assert suite.failures == sum(1 for s in results["scenarios"] if s["verdict"] == "fail")


def test_junit_failure_carries_message_console_and_failing_subtests() -> None:
    report_ = cases.RunReport("r1", "mutate", "fail", [
        cases.Case("mutant-3", "fail", message="survived: no scenario failed",
                   console="[  1.0] BUG: bad page\x07 state", diagnostics=["the diff"],
                   subtests=[cases.Case("probe p", "fail", message="T differs",
                                        subtests=[cases.Case("folio f", "fail", "P differs")])]),
        cases.Case("mutant-4", "skip", message="does not build"),
    ])  # fmt: skip
    (suite,) = list(JUnitXml.fromstring(junit.render(report_).encode()))
    tc, skipped = list(suite)
    (failure,) = tc.result
    assert isinstance(failure, Failure) and failure.message == "survived: no scenario failed"
    assert failure.text == "probe p: FAIL: T differs\n  folio f: FAIL: P differs"
    assert "BUG: bad page? state" in tc.system_out and "the diff" in tc.system_out
    assert isinstance(skipped.result[0], Skipped)


# --- KCIDB ---------------------------------------------------------------------------------


def test_kcidb_validates_against_kcidb_io_schema(captured: Path) -> None:
    write.write_all(captured)
    data = json.loads((captured / "kcidb.json").read_text())
    kcidb_io.schema.V5_0.validate_exactly(data)
    kcidb_io.schema.LATEST.validate(data)  # and every later v5 accepts it
    results, meta = _results(captured), json.loads((captured / "metadata.json").read_text())
    (checkout,) = data["checkouts"]
    (build_,) = data["builds"]
    assert build_["checkout_id"] == checkout["id"] and build_["status"] == "PASS"
    assert build_["id"] == f"folio_harness:{results['kernel']['build_key']}"
    assert checkout["misc"]["built_commit"] == results["kernel"]["head"]
    assert checkout["tree_name"] == "linux-6.1.y"
    series = meta["inputs"]["series"]
    if series:
        joined = "".join(f"{p['sha256']}\n" for p in series["patches"])
        assert checkout["patchset_hash"] == hashlib.sha256(joined.encode()).hexdigest()
    else:
        assert checkout["patchset_hash"] == ""
    paths = {t["path"]: t for t in data["tests"]}
    status = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "environment": "ERROR",
              "skipped": "SKIP"}  # fmt: skip
    for s in results["scenarios"]:
        top = f"folio_harness.{kcidb.path_segment(s['name'])}"
        assert paths[top]["status"] == status[s["verdict"]]
        for p in s["probes"]:
            probe_path = f"{top}.{kcidb.path_segment(cases.probe_name(p))}"
            assert paths[probe_path]["status"] == status[p["verdict"]]
            for f in p["folios"]:
                t = paths[f"{probe_path}.{kcidb.path_segment(cases.folio_name(f))}"]
                assert t["misc"]["expected"]["W"] == f["expected"]["W"]
                assert t["misc"]["observed"].get("W") == f["observed"]["W"]
    assert len({t["id"] for t in data["tests"]}) == len(data["tests"])


def test_kcidb_of_a_generic_report_with_every_status_validates() -> None:
    statuses = list(cases.STATUSES)
    report_ = cases.RunReport(
        "night-1", "nightly", "fail",
        [cases.Case(f"cell {s}/x", s, message=f"why {s}", values={"n": None, "v": 1})
         for s in statuses],
        kernels=[cases.Kernel(label="patched", version="6.1.192", build_key="abc")],
    )  # fmt: skip
    data = kcidb.render_data(report_)
    kcidb_io.schema.V5_0.validate_exactly(data)
    assert [t["status"] for t in data["tests"]] == [
        "PASS", "FAIL", "FAIL", "FAIL", "ERROR", "ERROR", "SKIP", "MISS"
    ]  # fmt: skip
    assert data["tests"][0]["path"] == "folio_harness.cell_pass_x"
    assert data["tests"][0]["misc"] == {"v": 1, "status": "pass"}  # no nulls in KCIDB


def test_report_kcidb_prints_it_for_submission(
    captured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--results", str(captured.parent), "report", "--kcidb", captured.name])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    kcidb_io.schema.V5_0.validate_exactly(data)
    assert not (captured / "kcidb.json").exists()  # printing writes nothing


def test_report_of_a_missing_run_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--results", str(tmp_path), "report", "nope"]) == run.EXIT_ERROR
    err = capsys.readouterr().err
    assert "run 'nope': no such directory" in err and "Traceback" not in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text('{"verdict": \n')
    assert cli.main(["--results", str(tmp_path), "report", "broken"]) == run.EXIT_ERROR
    assert "broken/results.json:2: not valid JSON" in capsys.readouterr().err


# --- HTML ----------------------------------------------------------------------------------


def test_html_is_self_contained_with_a_picture_per_folio(captured: Path) -> None:
    code = cli.main(["--results", str(captured.parent), "report", "--html", captured.name])
    assert code == 0
    page = (captured / "report.html").read_text()
    results = _results(captured)
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)
    sections = re.findall(r'<section class="case" id="[^"]+" data-case="([^"]+)"', page)
    assert sections == [html.esc(s["name"]) for s in results["scenarios"]]
    folios = sum(len(p["folios"]) for s in results["scenarios"] for p in s["probes"])
    assert page.count('class="folio-svg"') == folios
    for s in results["scenarios"]:
        for p in s["probes"]:
            for f in p["folios"]:
                assert f'aria-label="{html.esc(cases.folio_name(f))}"' in page


def test_folio_picture_draws_mappings_boundaries_and_differences() -> None:
    # An order-9 folio mremapped to straddle a page-table boundary, its second half in a
    # second VMA; the kernel shows one page with a P the model does not expect.
    folio = {
        "process": "main", "va": "0x100000100000", "order": 9,
        "expected": {"P": [[0, 512, 1]], "T": 512, "E": 0, "W": 2, "V": 2, "kind": "anon"},
        "observed": {"P": [[0, 100, 1], [100, 1, 2], [101, 411, 1]], "T": 513, "E": 0,
                     "W": 2, "pmd_mapped": False},
    }  # fmt: skip
    vmas = [{"start": "0x100000100000", "end": "0x100000180000"},
            {"start": "0x100000180000", "end": "0x100000300000"}]  # fmt: skip
    svg = html.folio_svg(folio, vmas)
    vma_edges = re.findall(r'class="vma-edge" x1="([\d.]+)"', svg)
    pt_edges = re.findall(r'class="pt-edge" x1="([\d.]+)"', svg)
    assert len(vma_edges) == 1 and len(pt_edges) == 1  # at page 128 and at page 256
    cell = html.STRIP_WIDTH / 512
    assert float(vma_edges[0]) == pytest.approx(56 + 128 * cell, abs=0.01)
    assert float(pt_edges[0]) == pytest.approx(56 + 256 * cell, abs=0.01)
    assert svg.count('class="p-diff"') == 1 and "pages 100..100" in svg
    assert "PMD-mapped" not in svg and "PTE-mapped: pages 0..511" in svg
    assert html.p_colour(2) in svg  # the odd page's colour


def test_counts_chart_and_night_trend() -> None:
    # One folio seen by the parent, then by the child at another address after mremap: one
    # chart (the guest's head PFN names the folio); the order-0 folio gets none.
    scenario = {"probes": [
        {"label": "a", "folios": [
            {"process": "m", "va": "0x200000", "order": 9, "expected": {"P": [[0, 512, 1]],
             "W": 1, "T": 512, "E": 1, "kind": "anon"},
             "observed": {"W": 1, "T": 512, "E": 1, "head_pfn": [3072]}},
            {"process": "m", "va": "0x600000", "order": 0, "expected": {"P": [[0, 1, 1]],
             "W": 1, "T": 1, "E": 0, "kind": "anon"}, "observed": {"head_pfn": [99]}}]},
        {"label": "b", "folios": [
            {"process": "c", "va": "0x900000", "order": 9, "expected": {"P": [[256, 256, 1]],
             "W": 2, "T": 512, "E": 0, "kind": "anon"},
             "observed": {"W": 3, "T": 512, "E": 0, "head_pfn": [3072]}}]},
    ]}  # fmt: skip
    chart = html.counts_chart(scenario)
    assert chart.count('class="chart"') == 1 and "folio pfn 3072, order 9" in chart
    assert chart.count("<polyline") == 6  # W, T, E for model and kernel
    assert "<title>W=3 (kernel)</title>" in chart and "<title>W=2 (model)</title>" in chart
    nights = [
        {"date": "2026-12-03", "verdict": "pass",
         "cells": [{"name": "thp", "verdict": "pass"}, {"name": "series", "verdict": "pass"}]},
        {"date": "2026-12-04", "verdict": "fail",
         "cells": [{"name": "thp", "verdict": "pass"}, {"name": "series", "verdict": "fail"}]},
    ]  # fmt: skip
    trend = html.trend_chart(nights)
    assert "Trend across 2 nights" in trend
    assert "2026-12-04: 1 fail" in trend and "2026-12-03: 2 pass" in trend
    assert trend.count('<td title="fail"') == 1


def test_a_night_directory_reports_its_cells_and_the_trend(tmp_path: Path) -> None:
    nightly = tmp_path / "nightly"
    for date, series in (("2026-12-02", "pass"), ("2026-12-03", "fail")):
        (nightly / date).mkdir(parents=True)
        (nightly / date / "summary.json").write_text(json.dumps({
            "date": date, "verdict": series,
            "cells": [{"name": "series/thp-basic", "verdict": series, "reason": "W differs"},
                      {"name": "thp/thp-basic", "status": "pass"}],
        }))  # fmt: skip
    (nightly / "2026-12-04").mkdir()
    (nightly / "2026-12-04" / "summary.json").write_text("{broken")
    data = cases.load(nightly / "2026-12-03")
    assert data.kind == "nightly" and data.verdict == "fail"
    assert [(c.name, c.status) for c in data.cases] == [
        ("series/thp-basic", "fail"), ("thp/thp-basic", "pass")
    ]  # fmt: skip
    assert [n["date"] for n in data.nights] == ["2026-12-02", "2026-12-03", "2026-12-04"]
    assert "summary.json" in data.nights[2]["problem"]
    paths = write.write_all(nightly / "2026-12-03", data)
    assert [p.name for p in paths] == ["results.ktap", "junit.xml", "kcidb.json", "report.html"]
    page = (nightly / "2026-12-03" / "report.html").read_text()
    assert "Trend across 3 nights" in page and 'data-case="series/thp-basic"' in page


# --- the runs write them -------------------------------------------------------------------


@pytest.mark.usefixtures("fakes")
def test_selftest_compare_run_writes_every_format(tmp_path: Path) -> None:
    from test_selftests import COMPARE, PLAN, ScriptedMachine, _execute, _flip

    vm = ScriptedMachine({})
    vm.boot = _flip(vm)  # type: ignore[method-assign]
    code, _ = _execute(tmp_path, PLAN + COMPARE, vm)
    assert code == run.EXIT_FAIL
    run_dir = tmp_path / "results" / "latest"
    stream = ktap.parse((run_dir / "results.ktap").read_text().splitlines())
    by_name = {c.description: c for c in stream.cases}
    assert by_name["khugepaged"].status == "fail"  # pass unpatched, crash patched
    assert by_name["soft-dirty"].status == "pass"
    assert [s.description for s in by_name["khugepaged"].subtests] == [
        "khugepaged (baseline)", "khugepaged (patched)"
    ]  # fmt: skip
    assert [s.status for s in by_name["khugepaged"].subtests] == ["pass", "fail"]
    (suite,) = list(JUnitXml.fromfile(str(run_dir / "junit.xml")))
    failed = {tc.name: tc.result[0].message for tc in suite if tc.is_failure}
    assert list(failed) == ["khugepaged"] and "regression: pass unpatched, crash" in failed[
        "khugepaged"
    ]
    data = json.loads((run_dir / "kcidb.json").read_text())
    kcidb_io.schema.V5_0.validate_exactly(data)
    crash = next(t for t in data["tests"] if t["path"].endswith("khugepaged_patched"))
    assert crash["status"] == "FAIL" and crash["build_id"] in {b["id"] for b in data["builds"]}
    assert crash["misc"]["status"] == "crash"


@pytest.mark.usefixtures("fake_kernel")
def test_an_interrupted_run_still_gets_every_format(tmp_path: Path) -> None:
    from test_run_fake_machine import DATA as RUN_DATA
    from test_run_fake_machine import RecordedMachine

    from harness import runconfig

    cfg = runconfig.load(RUN_DATA / "configs" / "one-scenario.yaml")
    vm = RecordedMachine(RUN_DATA / "console" / "run-thp.log",
                         RUN_DATA / "records" / "run-thp.log", interrupt=True)  # fmt: skip
    out = io.StringIO()
    code = run.execute(cfg, tmp_path / "results", ["harness", "run"],
                       progress=report.Progress(out), machine_impl=vm)  # fmt: skip
    assert code == run.EXIT_INTERRUPTED
    run_dir = tmp_path / "results" / "latest"
    stream = ktap.parse((run_dir / "results.ktap").read_text().splitlines())
    assert [(c.description, c.status) for c in stream.cases] == [("run", "error")]
    assert "interrupted" in stream.cases[0].reason
    assert "formats: results.ktap junit.xml kcidb.json report.html" in out.getvalue()


# --- diff ----------------------------------------------------------------------------------


def test_diff_of_the_unpatched_and_the_series_run(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["diff", str(DATA / "thp"), str(DATA / "series")])
    out = capsys.readouterr().out
    assert code == 1
    assert "kernel series_identity: none -> " in out
    assert "fa-whole-misaligned-page: skip -> pass" in out  # the knob only the series has
    # W is unobservable unpatched and read from kpagemc on the series kernel.
    assert re.search(r"anon-thp-munmap-half / probe whole \(main\) / folio main \S+ order 9:"
                     r"\n(      .*\n)*      kernel W: - -> 1\n", out)  # fmt: skip
    assert cli.main(["diff", str(DATA / "series"), str(DATA / "series")]) == 0
    assert "no differences" in capsys.readouterr().out


# --- progress ------------------------------------------------------------------------------


def test_plain_progress_has_no_bar_and_reports_make_steps_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()  # not a terminal
    progress = report.Progress(out)
    assert not progress.fancy
    monkeypatch.setattr(report.Bar, "PLAIN_EVERY", 0.0)
    watch = run.MakeBar(progress)
    watch.line("  CC      before/make/started.o")  # no bar before make starts: ignored
    watch.start(2)
    for line in ["make[1]: Entering directory", "  CC      mm/memory.o",
                 "  LD      vmlinux", "  AR      lib/lib.a"]:  # fmt: skip
        watch.line(line)
    watch.close()
    bar = watch.bar
    assert bar is not None and bar.done == 3 and bar.total == 3  # the total grows
    assert "\x1b[" not in out.getvalue()
    assert out.getvalue().splitlines()[-1].endswith("build: make: 3/3")


def test_fancy_progress_draws_a_bar_and_keeps_lines_above_it() -> None:
    out = io.StringIO()
    progress = report.Progress(out, fancy=True)
    with progress.bar("boot: scenarios", 2) as bar:
        progress.say("boot:   first")
        bar.advance(1, "first")
    text = out.getvalue()
    assert "boot:   first" in text
    assert "boot: scenarios first" in text and "1/2" in text


def test_make_steps_are_remembered_per_build_directory(tmp_path: Path) -> None:
    assert build._expected_steps(tmp_path) is None
    build._remember_steps(tmp_path, 900)
    build._remember_steps(tmp_path, 12)  # an incremental make does not shrink the total
    assert build._expected_steps(tmp_path) == 900
    assert build.MAKE_STEP.match("  CC      mm/memory.o")
    assert not build.MAKE_STEP.match("make[2]: Nothing to be done for 'all'.")

