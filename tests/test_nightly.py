"""harness nightly, offline: the matrix and its errors, a cell's derived inputs, flakes, history,
merging CI cells, and the CI examples' commands (they must exist in this harness)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from harness import cli, patches, runconfig
from harness.campaign import hosts, matrix, nightly
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "configs" / "nightly.yaml"
CI = ROOT / "configs" / "ci"


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).replace("@ROOT@", str(ROOT)))
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        matrix.load(write(tmp_path, text))
    return str(info.value)


# --- the matrix ------------------------------------------------------------------------------


def test_default_night_has_the_issue_cells() -> None:
    m = matrix.load(DEFAULT)
    assert [c.name for c in m.cells] == [
        "thp", "series", "series-debug", "selftests", "stress", "fuzz-series",
    ]  # fmt: skip
    fuzz = m.cell("fuzz-series")
    assert fuzz.campaign == matrix.Campaign("fuzz", "30m")
    assert fuzz.config == ROOT / "configs" / "series.yaml"
    assert m.cell("selftests").memory_mb == 2048
    assert m.retries == 2


@pytest.mark.parametrize(
    ("text", "where", "needle"),
    [
        ("cells:\n  - name: a\n    config: @ROOT@/configs/thp.yaml\n    colour: red\n",
         ":4", "unknown key 'colour'"),
        ("cells:\n  - name: Bad Name\n    config: @ROOT@/configs/thp.yaml\n",
         ":2", "must match"),
        ("cells:\n  - name: a\n    config: nowhere.yaml\n", ":3",
         "run config 'nowhere.yaml' not found"),
        ("cells:\n  - {name: a, config: @ROOT@/configs/thp.yaml}\n"
         "  - {name: a, config: @ROOT@/configs/thp.yaml}\n", ":3", "already used at"),
        ("cells:\n  - name: a\n    config: @ROOT@/configs/series.yaml\n"
         "    kernel: {series_prefix: 99}\n", ":4", "longer than the series (12 patches"),
        ("cells:\n  - name: a\n    config: @ROOT@/configs/thp.yaml\n"
         "    kernel: {series_prefix: 3}\n", ":4", "series_prefix needs a series"),
        ("cells:\n  - name: a\n    config: @ROOT@/configs/thp.yaml\n"
         "    select: [anon-thp-pmd, no-such-scenario]\n", ":4", "no scenario or test 'no-such"),
        ("cells:\n  - name: a\n    config: @ROOT@/configs/selftests.yaml\n"
         "    thp: {thp_enabled: always}\n", ":4", "runs selftests"),
        ("cells:\n  - name: a\n    config: @ROOT@/configs/thp.yaml\n"
         "    thp: {thp_enabled: sometimes}\n", ":4", "must be one of always, madvise, never"),
        ("cells:\n  - name: a\n    config: @ROOT@/configs/thp.yaml\n"
         "    campaign: {command: fuzz, time: half an hour}\n", ":4", "30m or 2h"),
        ("cells:\n  - name: a\n    config: @ROOT@/configs/thp.yaml\n"
         "    campaign: {command: bisect, time: 1m}\n", ":4", "must be one of fuzz, mutate"),
        ("cells:\n  - name: a\n    config: @ROOT@/configs/thp.yaml\n"
         "    machine: {memory: 100M}\n", ":4", "at least 256M"),
        ("retries: -1\ncells: []\n", ":1", "at least 0"),
        ("cells: []\n", ":1", "list at least one cell"),
    ],
)  # fmt: skip
def test_matrix_errors_name_file_line_and_fix(
    tmp_path: Path, text: str, where: str, needle: str
) -> None:
    message = load_error(tmp_path, text)
    assert f"m.yaml{where}" in message, message
    assert needle in message, message


def test_a_broken_run_config_is_reported_in_its_own_file(tmp_path: Path) -> None:
    broken = write(tmp_path, "kernel:\n  fragment: [x]\n", "broken.yaml")
    message = load_error(tmp_path, f"cells:\n  - name: a\n    config: {broken}\n")
    assert "broken.yaml:2" in message and "unknown key 'fragment'" in message


# --- a cell's inputs -------------------------------------------------------------------------


def test_series_prefix_writes_the_first_patches_and_builds_from_them(tmp_path: Path) -> None:
    m = matrix.load(write(tmp_path, """\
        cells:
          - name: prefix
            config: @ROOT@/configs/series.yaml
            kernel: {series_prefix: 9, cmdline: "quiet"}
            machine: {memory: 2G}
        """))  # fmt: skip
    argv = matrix.prepare(m.cell("prefix"), tmp_path / "cell")
    assert argv == ["run", "--config", str(tmp_path / "cell" / "prefix.yaml")]
    cfg = runconfig.load(tmp_path / "cell" / "prefix.yaml")
    assert cfg.kernel.series == tmp_path / "cell" / "series-prefix" / "series"
    full = patches.read_series(ROOT / "kernel-patches" / "series")
    prefix = patches.read_series(cfg.kernel.series)
    assert [p.sha256 for p in prefix.patches] == [p.sha256 for p in full.patches[:9]]
    assert prefix.identity != full.identity  # a different kernel in the cache
    assert cfg.kernel.cmdline == "quiet" and cfg.machine.memory_mb == 2048
    # Everything else is the run config's, with its paths made absolute.
    assert cfg.kernel.fragments == runconfig.load(ROOT / "configs" / "series.yaml").kernel.fragments


def test_thp_knobs_and_select_rewrite_the_scenarios(tmp_path: Path) -> None:
    m = matrix.load(write(tmp_path, """\
        cells:
          - name: always
            config: @ROOT@/configs/thp.yaml
            select: [anon-thp-pmd, shmem-pmd]
            thp: {thp_enabled: always, shmem_enabled: advise}
        """))  # fmt: skip
    matrix.prepare(m.cell("always"), tmp_path / "cell")
    cfg = runconfig.load(tmp_path / "cell" / "always.yaml")
    assert [sc.name for sc in cfg.scenarios] == ["anon-thp-pmd", "shmem-pmd"]
    for sc in cfg.scenarios:
        assert (sc.setup.thp_enabled, sc.setup.shmem_enabled) == ("always", "advise")
    original = {sc.name: sc for sc in runconfig.load(ROOT / "configs" / "thp.yaml").scenarios}

    def steps(sc: object) -> list[object]:  # where each step was written differs, nothing else
        return [dataclasses.replace(step, where=None) for step in sc.steps]  # type: ignore[attr-defined]

    assert steps(cfg.scenarios[0]) == steps(original["anon-thp-pmd"])


def test_select_picks_selftests_and_campaign_cells_take_the_budget(tmp_path: Path) -> None:
    m = matrix.load(write(tmp_path, """\
        cells:
          - name: two-tests
            config: @ROOT@/configs/selftests.yaml
            select: [soft-dirty, mremap_test]
          - name: fuzz
            config: @ROOT@/configs/series.yaml
            campaign: {command: fuzz, time: 30m, args: [--seed, 7]}
        """))  # fmt: skip
    matrix.prepare(m.cell("two-tests"), tmp_path / "st")
    plan = runconfig.load(tmp_path / "st" / "two-tests.yaml").selftests
    assert plan is not None and [t.name for t in plan.tests] == ["mremap_test", "soft-dirty"]
    config = str(tmp_path / "fz" / "fuzz.yaml")
    assert matrix.prepare(m.cell("fuzz"), tmp_path / "fz") == [
        "fuzz", "--config", config, "--time", "30m", "--seed", "7"]  # fmt: skip
    assert matrix.prepare(m.cell("fuzz"), tmp_path / "fz", budget="5m")[4] == "5m"


def test_a_missing_command_fails_its_cell_with_a_clear_error(tmp_path: Path) -> None:
    if nightly._command_exists("fuzz"):
        pytest.skip("this harness has `harness fuzz`: the fuzz cell would really fuzz")
    assert nightly._command_exists("run") and not nightly._command_exists("no-such-command")
    m = matrix.load(write(tmp_path, """\
        cells:
          - name: fuzz
            config: @ROOT@/configs/series.yaml
            campaign: {command: fuzz, time: 1m}
        """))  # fmt: skip
    out = io.StringIO()
    code = nightly.run_cell(m, "fuzz", tmp_path / "fuzz", stream=out)
    record = json.loads((tmp_path / "fuzz" / "cell.json").read_text())
    assert code == 2 and record["status"] == "error" and record["attempts"] == []
    assert "no 'fuzz' command" in record["error"] and "m.yaml:2" in record["error"]
    assert record["command"][:2] == ["harness", "fuzz"]


# --- flakes and history ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exits", "status"),
    [([0], "pass"), ([1, 0], "flaky"), ([2, 1, 0], "flaky"), ([1, 1, 1], "fail"),
     ([1, 2], "error"), ([1, 130], "interrupted"), ([], "error")],
)  # fmt: skip
def test_cell_status(exits: list[int], status: str) -> None:
    assert nightly.cell_status(exits) == status


def test_compare_nights() -> None:
    before = {"a": "pass", "b": "fail", "c": "fail", "d": "pass", "e": "flaky"}
    after = {"a": "fail", "b": "pass", "c": "error", "d": "flaky", "e": "pass", "new": "fail"}
    assert nightly.compare_nights(after, before) == {
        "new_failures": ["a", "new"], "fixed": ["b"], "still_failing": ["c"], "flaky": ["d"],
    }  # fmt: skip
    # The first night: every failing cell is new.
    assert nightly.compare_nights({"a": "fail", "b": "pass"}, None)["new_failures"] == ["a"]


def cell_dir(root: Path, name: str, status: str, exits: list[int]) -> Path:
    """A cell's directory as `harness nightly --cell` leaves it (a CI job's artifact)."""
    path = root / name
    path.mkdir(parents=True)
    attempts = [
        {"n": i + 1, "exit": e, "seconds": 1.0, "dir": f"attempt-{i + 1}",
         "verdict": "pass" if e == 0 else "fail", "failing": [] if e == 0 else ["anon-thp-pmd"]}
        for i, e in enumerate(exits)
    ]  # fmt: skip
    record = {"cell": name, "status": status, "attempts": attempts, "host": "ci-runner",
              "command": ["harness", "run", "--config", "x"], "error": None}  # fmt: skip
    (path / "cell.json").write_text(json.dumps(record))
    return path


def test_two_merged_nights_compare_and_set_the_exit_status(tmp_path: Path) -> None:
    m = matrix.load(write(tmp_path, """\
        cells:
          - {name: thp, config: @ROOT@/configs/thp.yaml}
          - {name: series, config: @ROOT@/configs/series.yaml}
          - {name: stress, config: @ROOT@/configs/stress.yaml}
        """))  # fmt: skip
    results = tmp_path / "results"
    one = tmp_path / "ci-1"
    cell_dir(one, "thp", "pass", [0])
    cell_dir(one, "series", "fail", [1, 1, 1])
    out = io.StringIO()
    # stress has no directory: it is reported, not lost.
    assert nightly.merge(m, [one], results, "2026-12-01", out=out) == 1
    first = json.loads((results / "nightly" / "2026-12-01" / "summary.json").read_text())
    assert first["cells"]["stress"]["status"] == "not-run"
    assert "no directory for this cell" in first["cells"]["stress"]["error"]
    assert first["comparison"]["new_failures"] == ["series", "stress"]
    assert (results / "nightly" / "2026-12-01" / "cells" / "thp" / "cell.json").exists()

    two = tmp_path / "ci-2"
    cell_dir(two / "artifact-a", "thp", "flaky", [1, 0])
    cell_dir(two / "artifact-b", "series", "pass", [0])
    cell_dir(two / "artifact-c", "stress", "fail", [1, 1, 1])
    out = io.StringIO()
    assert nightly.merge(m, [two], results, "2026-12-02", out=out) == 0
    second = json.loads((results / "nightly" / "2026-12-02" / "summary.json").read_text())
    assert second["previous"] == "2026-12-01"
    assert second["comparison"] == {
        "new_failures": [], "fixed": ["series"], "still_failing": ["stress"], "flaky": ["thp"],
    }  # fmt: skip
    assert second["cells"]["thp"]["exits"] == [1, 0]
    text = out.getvalue()
    assert "previous night: 2026-12-01" in text and "flaky: thp" in text
    with pytest.raises(ConfigError, match="already holds a night"):
        nightly.merge(m, [two], results, "2026-12-02", out=out)


def test_nights_on_one_date_are_numbered_and_ordered(tmp_path: Path) -> None:
    first = nightly.new_night_dir(tmp_path)
    second = nightly.new_night_dir(tmp_path)
    assert second.name == f"{first.name}.2"
    for d in (first, second):
        (d / "summary.json").write_text(json.dumps({"cells": {}, "night": d.name}))
    tenth = tmp_path / f"{first.name}.10"
    assert nightly.previous_night(tmp_path, tenth.name)[0] == second.name  # type: ignore[index]
    assert nightly.previous_night(tmp_path, first.name) is None


def test_merge_rejects_a_directory_without_cells(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no cell\.json"):
        nightly.merge(matrix.load(DEFAULT), [tmp_path], tmp_path / "r", out=io.StringIO())


# --- hosts file --------------------------------------------------------------------------------


def test_hosts_file_is_checked_with_file_and_line(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("")
    good = write(tmp_path, f"""\
        hosts:
          - {{name: a, host: 127.0.0.1, port: 2222, key: {key}, jobs: 2, nice: 10,
              min_free: 4G, env: {{http_proxy: x}}}}
        """, "hosts.yaml")  # fmt: skip
    (spec,) = hosts.load_hosts(good)
    assert (spec.port, spec.key, spec.jobs, spec.nice, spec.min_free_mb) == (2222, key, 2, 10, 4096)
    assert spec.env == {"http_proxy": "x"}
    bad = write(tmp_path, "hosts:\n  - {name: a, host: h}\n  - {name: a, host: h, prot: 1}\n",
                "bad.yaml")  # fmt: skip
    with pytest.raises(ConfigError, match=r"bad.yaml:3.*unknown key 'prot'"):
        hosts.load_hosts(bad)
    missing = write(tmp_path, "hosts:\n  - {name: a, host: h, key: nokey}\n", "nokey.yaml")
    with pytest.raises(ConfigError, match=r"nokey.yaml:2.*nokey not found"):
        hosts.load_hosts(missing)


def test_the_hosts_example_loads() -> None:
    (spec,) = hosts.load_hosts(ROOT / "configs" / "hosts.example.yaml")
    assert (spec.name, spec.nice, spec.min_free_mb) == ("builder-1", 10, 20 << 10)


def test_the_bundle_skips_local_state_and_its_id_follows_content(tmp_path: Path) -> None:
    project = tmp_path / "p"
    for rel in ("harness/a.py", ".venv/bin/python", "results/x/results.json", "README.md"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(rel)
    one = hosts.make_bundle(project, tmp_path / "1.tgz")
    import tarfile

    with tarfile.open(one.path) as tar:
        assert sorted(tar.getnames()) == ["README.md", "harness/a.py"]
    (project / "results" / "y").write_text("more results")
    assert hosts.make_bundle(project, tmp_path / "2.tgz").identity == one.identity
    (project / "README.md").write_text("changed")
    assert hosts.make_bundle(project, tmp_path / "3.tgz").identity != one.identity


# --- the CLI and the CI examples ---------------------------------------------------------------


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd,
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_cli_emits_the_cells_and_reports_a_bad_matrix_without_a_traceback(tmp_path: Path) -> None:
    proc = run_cli("nightly", "--emit", "github-matrix")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cell": [c.name for c in matrix.load(DEFAULT).cells]}
    bad = write(tmp_path, "cells:\n  - name: a\n    config: nowhere.yaml\n")
    proc = run_cli("nightly", "--matrix", str(bad))
    assert proc.returncode == 2
    assert "m.yaml:3" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("nightly", "--cell", "no-such-cell")
    assert proc.returncode == 2 and "no cell named 'no-such-cell'" in proc.stderr


HARNESS_CALL = re.compile(r"(?:\.venv/bin/)?\bharness\s+([^)|>;&\n]*)")


def harness_commands(shell: str, cell: str) -> list[list[str]]:
    """The harness invocations in a CI step's shell text, CI variables filled with a cell."""
    shell = re.sub(r"\$\{\{\s*matrix\.cell\s*\}\}", cell, shell).replace("$CELL", cell)
    found = []
    for match in HARNESS_CALL.finditer(shell):
        args = shlex.split(match.group(1).replace('"', "").strip())
        if args[:1] in (["nightly"], ["run"], ["doctor"]):
            found.append(args)
    return found


def check_commands(commands: list[list[str]], root: Path = ROOT) -> None:
    names = {c.name for c in matrix.load(DEFAULT).cells}
    for args in commands:
        try:
            parsed = cli.parser().parse_args(args)
        except SystemExit as exc:
            raise AssertionError(f"`harness {shlex.join(args)}` is not a valid command") from exc
        if getattr(parsed, "cell", None):
            assert parsed.cell in names
        matrix_arg = getattr(parsed, "matrix", None)
        if matrix_arg and not Path(matrix_arg).is_absolute():
            assert (root / matrix_arg).exists(), matrix_arg


def steps_of(doc: object) -> list[str]:
    """Every shell text in a CI file: GitHub `run:` and GitLab `script:` entries."""
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "run" and isinstance(value, str):
                found.append(value)
            elif key == "script" and isinstance(value, list):
                found.extend(str(v) for v in value)
            else:
                found.extend(steps_of(value))
    elif isinstance(doc, list):
        for item in doc:
            found.extend(steps_of(item))
    return found


@pytest.mark.parametrize("name", ["github-nightly.yml", "gitlab-nightly.yml"])
def test_ci_examples_run_commands_that_exist(name: str) -> None:
    doc = yaml.safe_load((CI / name).read_text())
    shells = steps_of(doc)
    commands = [c for s in shells for c in harness_commands(s, "thp")]
    assert commands, f"{name} runs no harness command"
    check_commands(commands)
    for s in shells:
        for script in re.findall(r"\./(scripts/[\w.-]+)", s):
            assert (ROOT / script).exists(), script
    if name.startswith("github"):
        assert "schedule" in doc[True]  # YAML 1.1 reads the key `on` as true
        modes = {tuple(c[:2]) for c in commands}
        assert ("nightly", "--emit") in modes and ("nightly", "--cell") in modes
        assert ("nightly", "--merge") in modes
        cell_job = doc["jobs"]["cell"]
        assert "fromJSON(needs.plan.outputs.cells)" in cell_job["strategy"]["matrix"]
    else:
        assert any(r.get("if", "").endswith('"schedule"') for r in doc["nightly-plan"]["rules"])
        assert doc["nightly"]["trigger"]["include"][0]["artifact"] == "nightly-cells.yml"


def test_the_emitted_gitlab_pipeline_runs_every_cell_and_merges() -> None:
    proc = run_cli("nightly", "--emit", "gitlab")
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout)
    names = [c.name for c in matrix.load(DEFAULT).cells]
    assert doc["nightly-cell"]["parallel"]["matrix"] == [{"CELL": names}]
    commands = [c for s in steps_of(doc) for c in harness_commands(s, names[0])]
    assert {(c[0], c[3]) for c in commands} == {("nightly", "--cell"), ("nightly", "--merge")}
    check_commands(commands)


def test_a_night_whose_only_host_is_unreachable_loses_no_cell(tmp_path: Path) -> None:
    # A real connection attempt to a loopback port nobody listens on: refused at once.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hosts_file = write(tmp_path, f"hosts:\n  - {{name: gone, host: 127.0.0.1, port: {port}}}\n",
                       "hosts.yaml")  # fmt: skip
    m = matrix.load(ROOT / "tests" / "data" / "nightly" / "one.yaml")
    out = io.StringIO()
    code = nightly.run_night(m, tmp_path / "results", hosts_file, night_name="n1", out=out)
    summary = json.loads((tmp_path / "results" / "nightly" / "n1" / "summary.json").read_text())
    assert code == 1, out.getvalue()
    cell = summary["cells"]["thp-pmd"]
    assert cell["status"] == "not-run" and cell["attempts"] == 0
    assert "no host left to run it (gone: " in cell["error"]
    assert summary["hosts"]["gone"] and summary["comparison"]["new_failures"] == ["thp-pmd"]
    assert "host gone: not used tonight" in out.getvalue()


def test_cells_start_longest_first_by_budget_and_by_the_last_night(tmp_path: Path) -> None:
    m = matrix.load(DEFAULT)
    root = tmp_path / "nightly"
    first = nightly.new_night_dir(root, "2026-12-01")
    night = nightly.Night(m, first, 0, None, lambda _: None)
    # No history: only the fuzz cell's 30-minute budget is known; the rest keep their order.
    assert nightly.longest_first(night) == [
        "fuzz-series", "thp", "series", "series-debug", "selftests", "stress",
    ]  # fmt: skip
    took = {"thp": 26, "series": 35, "series-debug": 26, "selftests": 2400, "stress": 110,
            "fuzz-series": 1805}  # fmt: skip
    (first / "summary.json").write_text(
        json.dumps({"cells": {n: {"status": "pass", "seconds": s} for n, s in took.items()}})
    )
    second = nightly.Night(m, nightly.new_night_dir(root, "2026-12-02"), 0, None, lambda _: None)
    assert nightly.longest_first(second) == [
        "selftests", "fuzz-series", "stress", "series", "thp", "series-debug",
    ]  # fmt: skip
    # A budget given for the night counts for the campaign cells, as it will when they run.
    third = nightly.Night(m, nightly.new_night_dir(root, "2026-12-03"), 0, "2h", lambda _: None)
    assert nightly.longest_first(third)[0] == "fuzz-series"


def test_a_campaign_cell_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A seeded campaign that found something would find it again in its whole budget; a
    plain cell that fails is retried. (The attempt itself is replaced: this is the policy.)"""
    m = matrix.load(write(tmp_path, """\
        retries: 2
        cells:
          - {name: fuzz, config: @ROOT@/configs/series.yaml, campaign: {command: fuzz, time: 1m}}
          - {name: thp, config: @ROOT@/configs/thp.yaml}
        """))  # fmt: skip
    attempts: list[list[str]] = []

    def failing_attempt(argv: list[str], attempt_dir: Path, stream: object) -> int:
        attempts.append(argv)
        attempt_dir.mkdir(parents=True, exist_ok=True)
        return 1

    monkeypatch.setattr(nightly, "_attempt", failing_attempt)
    assert nightly.run_cell(m, "fuzz", tmp_path / "fuzz", stream=io.StringIO()) == 1
    assert [a[0] for a in attempts] == ["fuzz"]
    record = json.loads((tmp_path / "fuzz" / "cell.json").read_text())
    assert record["retries"] == 0 and record["status"] == "fail"
    attempts.clear()
    assert nightly.run_cell(m, "thp", tmp_path / "thp", stream=io.StringIO()) == 1
    assert [a[0] for a in attempts] == ["run", "run", "run"]


def test_skipped_scenarios_are_not_listed_as_failing(tmp_path: Path) -> None:
    latest = tmp_path / "latest"
    latest.mkdir()
    scenarios = [
        {"name": "a", "verdict": "pass"}, {"name": "fa-whole-x", "verdict": "skipped"},
        {"name": "b", "verdict": "fail"}, {"name": "c", "verdict": "environment"},
    ]  # fmt: skip
    (latest / "results.json").write_text(json.dumps({"verdict": "pass", "scenarios": scenarios}))
    assert nightly._verdict(tmp_path)["failing"] == ["b", "c"]
