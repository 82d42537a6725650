"""End to end: a run on the kernel series' kernel (configs/series.yaml's, from the shared
cache) writes results.ktap, junit.xml and kcidb.json, and `harness report --html` of it
renders in headless Chromium. Only the skeleton's scenario runs, to keep it short.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import kcidb_io
import pytest
import yaml
from conftest import needs_kernel_tools
from junitparser import JUnitXml
from test_e2e import harness

from harness import ktap

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.e2e, needs_kernel_tools]


@pytest.fixture(scope="module")
def series_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("series")
    config = yaml.safe_load((ROOT / "configs" / "series.yaml").read_text())
    kernel = config["kernel"]
    here = ROOT / "configs"
    kernel["series"] = str((here / kernel["series"]).resolve())
    kernel["fragments"] = [str(here / f) for f in kernel["fragments"]]
    config["workloads"] = [str(here / "workloads" / "skeleton.yaml")]
    path = tmp / "series-skeleton.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = harness("run", "--config", str(path), results=tmp / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "formats: results.ktap junit.xml kcidb.json report.html" in proc.stdout
    return (tmp / "results" / "latest").resolve()


def test_a_series_run_writes_every_format(series_run: Path) -> None:
    results = json.loads((series_run / "results.json").read_text())
    stream = ktap.parse((series_run / "results.ktap").read_text().splitlines())
    assert [(c.description, c.status) for c in stream.cases] == [
        (s["name"], "pass") for s in results["scenarios"]
    ]  # fmt: skip
    (suite,) = list(JUnitXml.fromfile(str(series_run / "junit.xml")))
    assert [tc.name for tc in suite] == [s["name"] for s in results["scenarios"]]
    data = json.loads((series_run / "kcidb.json").read_text())
    kcidb_io.schema.V5_0.validate_exactly(data)
    assert data["checkouts"][0]["patchset_hash"]  # the series is applied
    folio_tests = [t for t in data["tests"] if ".folio_" in t["path"]]
    assert folio_tests and all(isinstance(t["misc"]["observed"]["W"], int) for t in folio_tests)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_report_html_of_a_series_run_renders_in_chromium(series_run: Path, tmp_path: Path) -> None:
    from test_report_chromium import chromium, png_pixels

    proc = harness("report", "--html", str(series_run), results=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = Path(proc.stdout.strip())
    assert page == series_run / "report.html"
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert re.findall(r'data-case="([^"]+)"', dom) == ["anon-thp-munmap-half"]
    shot = series_run / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri())
    print(f"\nscreenshot: {shot}")
    _, _, pixels = png_pixels(shot)
    assert len(set(pixels)) > 50
