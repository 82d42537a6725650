"""mmstress (guest-tests/mmstress.c): its TAP output judged as the harness judges it, from
captured guest runs, and the program itself run briefly on the host.

tests/data/ktap/mmstress*.log are real guest outputs (data channel), each with its
'# expect:' line (test_ktap.py judges every capture there too): a run on the patched
kernel that passed, one where paused audits found a folio whose kept (VMA, page table)
count was one short, and one on the unpatched kernel, where the audits are skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import console, ktap, selftests

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "guest-tests" / "mmstress.c"
DATA = Path(__file__).parent / "data" / "ktap"
AUDIT = re.compile(r"^audit (\d+) at [\d.]+s\b")
SPEC = selftests.TestSpec("mmstress", "mmstress", ("-t", "60"), 300.0, guest=True)


def figures(text: str) -> dict[str, str]:
    """'checked=60 mismatches=1 took=1.3s' -> {'checked': '60', ...}."""
    return dict(re.findall(r"(\w+)=(\S+)", text))


def capture(name: str) -> tuple[list[str], ktap.Stream]:
    lines = (DATA / name).read_text().splitlines()[1:]  # after '# expect: ...'
    return lines, ktap.parse(lines)


def framed(lines: list[str], status: int | None) -> selftests.Framed:
    return selftests.Framed("mmstress", lines, status, 60.0, ended=status is not None)


def quiet_console() -> console.ConsoleReport:
    return console.parse_console(["@@HARNESS-BEGIN mmstress", "@@HARNESS-END mmstress status=0"])


def audit_rounds(stream: ktap.Stream) -> list[ktap.Case]:
    return [c for c in stream.cases if AUDIT.match(c.description)]


# --- captured outputs ------------------------------------------------------------------------


def test_a_passing_run_on_the_patched_kernel() -> None:
    lines, stream = capture("mmstress.log")
    assert stream.version == "TAP 13" and stream.plan == len(stream.cases)
    rounds = audit_rounds(stream)
    # One test per round, the workers, the audit after exit: the plan printed first holds.
    assert len(rounds) == stream.plan - 2 >= 12
    for n, case in enumerate(rounds, 1):
        f = figures(case.description)
        assert AUDIT.match(case.description).group(1) == str(n)  # type: ignore[union-attr]
        assert case.status == "pass" and f["mismatches"] == "0" and int(f["checked"]) > 0
    workers = figures(stream.cases[-2].description)
    assert stream.cases[-2].description.startswith("workers finished without errors")
    assert workers["errors"] == workers["corrupt"] == "0" and int(workers["ops"]) > 1000
    assert int(workers["forks"]) > 0 and int(workers["mremaps"]) > 0
    assert stream.cases[-1].description.startswith("audit after exit")
    summary = figures(next(d for d in stream.diagnostics if d.startswith("ops=")))
    assert summary["mismatches"] == "0" and int(summary["audits"]) == len(rounds) + 1
    assert float(summary["seconds"]) >= 60
    result = selftests.judge_test(SPEC, framed(lines, 0), quiet_console(), "done", None)
    assert (result.outcome, result.reason) == ("pass", "")
    assert result.counts == {"pass": stream.plan}


def test_a_mismatch_round_fails_the_run() -> None:
    lines, stream = capture("mmstress-mismatch.log")
    bad = [c for c in audit_rounds(stream) if c.status == "fail"]
    assert [c.number for c in bad] == [2, 3]
    f = figures(bad[0].description)
    assert f["mismatches"] == "1" and f["checked"] == "60"
    # The kernel's own lines for the mismatching folio are copied under the round.
    assert any("pt_mapcount=4 status=mismatch" in d for d in stream.diagnostics)
    verdict = ktap.judge(stream, ktap.Ending(1))
    assert verdict.outcome == "fail"
    assert verdict.reason.startswith("not ok 2 audit 2 at 21.7s: checked=60 mismatches=1")
    assert verdict.reason.endswith("(+1 more)")
    # Exit status 0 would not save it: a failed round is a failed run.
    assert ktap.judge(stream, ktap.Ending(0)).outcome == "fail"
    result = selftests.judge_test(SPEC, framed(lines, 1), quiet_console(), "done", None)
    assert (result.outcome, result.reason) == (verdict.outcome, verdict.reason)
    assert result.counts == {"pass": 2, "fail": 2}


def test_the_guest_dying_while_it_ran_is_a_crash() -> None:
    """The same capture as the guest left it: the panic on the console decides."""
    lines, _ = capture("mmstress-mismatch.log")
    report = console.parse_console([
        "@@HARNESS-BEGIN mmstress",
        "BUG: Bad page state in process mmstress  pfn:04201",
        "Kernel panic - not syncing: Fatal exception",
    ])  # fmt: skip
    result = selftests.judge_test(SPEC, framed(lines, None), report, "panic", "mmstress")
    assert result.outcome == "crash"
    assert result.reason == "kernel bad_page: BUG: Bad page state in process mmstress  pfn:04201"


def test_a_kernel_warning_fails_a_clean_run() -> None:
    """'No splat': zero mismatches and no worker error are not enough."""
    lines, _ = capture("mmstress.log")
    report = console.parse_console([
        "@@HARNESS-BEGIN mmstress",
        "------------[ cut here ]------------",
        "WARNING: CPU: 1 PID: 154 at mm/folio_pt_mapcount.c:113 folio_pt_unmap_ptable+0x76/0x7a",
        "@@HARNESS-END mmstress status=0",
    ])  # fmt: skip
    result = selftests.judge_test(SPEC, framed(lines, 0), report, "done", None)
    assert result.outcome == "fail" and result.reason.startswith("kernel warning: ")


def test_without_the_audit_file_the_rounds_skip_and_the_workers_still_count() -> None:
    lines, stream = capture("mmstress-unpatched.log")
    rounds = audit_rounds(stream)
    assert rounds and all(c.status == "skip" for c in rounds)
    assert "CONFIG_FOLIO_MAPCOUNT_DEBUG" in rounds[0].reason
    assert stream.cases[-2].status == "pass" and stream.cases[-1].status == "skip"
    result = selftests.judge_test(SPEC, framed(lines, 0), quiet_console(), "done", None)
    assert result.outcome == "pass"
    assert result.reason.startswith(f"{len(rounds) + 1} skipped: /sys/kernel/debug/")


# --- the program on the host -----------------------------------------------------------------


@pytest.fixture(scope="module")
def mmstress(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("mmstress") / "mmstress"
    # The harness builds with -Wall -Wextra; -Werror here keeps the source warning-free.
    r = subprocess.run(
        [gcc, "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(SOURCE)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 and "cannot find -lc" in r.stderr:
        pytest.skip(f"no static libc for gcc -static: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stderr
    return out


def test_a_short_run_on_the_host(mmstress: Path) -> None:
    """Two workers for 3 s: every operation's errno and every page's content is checked
    against the model; without the audit file (the host kernel) the audits skip. -K
    leaves the host's THP settings alone."""
    r = subprocess.run(
        [str(mmstress), "-p", "2", "-t", "3", "-i", "1", "-s", "7", "-K"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    stream = ktap.parse(r.stdout.splitlines())
    problems = [d for d in stream.diagnostics if re.match(r"(worker|child|fork child|monitor)", d)]
    assert problems == [] and r.returncode == 0, r.stdout
    assert stream.plan == 3 + 2 == len(stream.cases)
    workers = figures(stream.cases[-2].description)
    assert stream.cases[-2].status == "pass" and workers["errors"] == "0"
    for op in ("forks", "mremaps", "munmaps", "mprotects", "dontneeds"):
        assert int(workers[op]) > 0, op
    verdict = ktap.judge(stream, ktap.Ending(r.returncode))
    assert verdict.outcome == "pass", verdict


@pytest.mark.parametrize("args", [["-p", "0"], ["-t", "x"], ["-i", "0"], ["extra"], ["-q"]])
def test_bad_arguments_are_refused(mmstress: Path, args: list[str]) -> None:
    r = subprocess.run([str(mmstress), *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and r.stdout == "" and "usage: mmstress" in r.stderr
