"""The TAP/KTAP parser and the per-program judgement, offline.

tests/data/ktap/*.log are real outputs of 6.1 vm selftests captured from guest runs
(data channel, one test's frame each); the inline streams cover the format's corners.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import ktap

DATA = Path(__file__).parent / "data" / "ktap"


def parse(text: str) -> ktap.Stream:
    return ktap.parse(text.splitlines())


def outcome(text: str, status: int | None = 0, **kw: object) -> ktap.Verdict:
    return ktap.judge(parse(text), ktap.Ending(status, **kw))  # type: ignore[arg-type]


KSELFTEST = """\
TAP version 13
1..4
# [INFO] detected THP size: 2048 KiB
ok 1 range is not softdirty
not ok 2 range is softdirty after write
ok 3 # SKIP Hugetlb not supported
ok 4 # XFAIL expected to fail here
# Totals: pass:1 fail:1 xfail:1 xpass:0 skip:1 error:0
"""


def test_kselftest_lines() -> None:
    s = parse(KSELFTEST)
    assert s.version == "TAP 13" and s.plan == 4
    assert [c.status for c in s.cases] == ["pass", "fail", "skip", "xfail"]
    assert s.cases[2].reason == "Hugetlb not supported"
    assert s.cases[2].description == "Hugetlb not supported"
    assert s.totals == {"pass": 1, "fail": 1, "xfail": 1, "xpass": 0, "skip": 1, "error": 0}
    assert s.diagnostics == ["[INFO] detected THP size: 2048 KiB"]
    v = ktap.judge(s, ktap.Ending(1))
    assert v.outcome == "fail" and v.reason == "not ok 2 range is softdirty after write"
    assert v.counts == {"pass": 1, "fail": 1, "skip": 1, "xfail": 1}


def test_error_directive_is_a_failure() -> None:
    v = outcome("TAP version 13\n1..1\nnot ok 1 # error open failed\n", 1)
    assert v.outcome == "fail" and "open failed" in v.reason


def test_plan_skip_and_ksft_skip() -> None:
    v = outcome("TAP version 13\n1..0 # SKIP userfaultfd syscall not available\n", 4)
    assert (v.outcome, v.reason) == ("skip", "userfaultfd syscall not available")
    v = outcome("TAP version 13\n1..2\nok 1 # SKIP no THP\nok 2 # SKIP no THP\n", 0)
    assert (v.outcome, v.reason) == ("skip", "no THP")


def test_some_skipped_is_a_pass_with_a_note() -> None:
    v = outcome("TAP version 13\n1..2\nok 1 a\nok 2 # SKIP no hugetlb\n", 0)
    assert v.outcome == "pass" and v.reason == "1 skipped: no hugetlb"


def test_bail_out() -> None:
    v = outcome("TAP version 13\n1..3\nok 1 a\nBail out! mmap failed\n", 1)
    assert (v.outcome, v.reason) == ("fail", "Bail out! mmap failed")


def test_fewer_than_planned() -> None:
    v = outcome("TAP version 13\n1..3\nok 1 a\n", 0)
    assert (v.outcome, v.reason) == ("fail", "ran 1 of 3 planned tests")


def test_no_tap_uses_the_exit_status() -> None:
    text = "Run test: collapse with max_ptes_none exceeded (khugepaged:anon)... Fail\n"
    assert outcome(text, 0).outcome == "pass"
    v = outcome(text, 1)
    assert v.outcome == "fail" and v.reason.startswith("exit status 1: Run test")
    v = outcome("userfaultfd syscall not available in this kernel\n", 4)
    assert (v.outcome, v.reason) == ("skip", "userfaultfd syscall not available in this kernel")
    assert outcome("", 4).reason == "exit status 4 (KSFT_SKIP)"


def test_signals() -> None:
    assert outcome("ok 1 a\n", 139).reason == "killed by SIGSEGV"
    assert outcome("", 135).reason == "killed by SIGBUS"


def test_timeout_crash_and_bounded() -> None:
    assert outcome("partial\n", 137, timed_out=True).outcome == "timeout"
    v = outcome("transhuge-stress: 1.2 s/loop\n", 137, timed_out=True, bounded=True)
    assert (v.outcome, v.reason) == ("pass", "ran until its deadline (bounded)")
    # A bounded test that failed before its deadline is still a failure.
    v = outcome("TAP version 13\nnot ok 1 x\n", 137, timed_out=True, bounded=True)
    assert v.outcome == "timeout"
    bug = "kernel bug: kernel BUG at mm/rmap.c"
    v = outcome("TAP version 13\n1..1\nok 1 a\n", None, crashed=bug)
    assert (v.outcome, v.reason) == ("crash", "kernel bug: kernel BUG at mm/rmap.c")
    assert outcome("TAP version 13\n1..1\nok 1 a\n", None).outcome == "crash"


def test_ktap_nested_subtests_by_indentation() -> None:
    s = parse(
        "KTAP version 1\n1..2\n"
        "    KTAP version 1\n    # Subtest: inner\n    1..2\n    ok 1 a\n    not ok 2 b\n"
        "not ok 1 inner\n"
        "ok 2 # SKIP not built\n"
    )
    assert s.version == "KTAP 1" and s.plan == 2
    assert [c.status for c in s.cases] == ["fail", "skip"]
    inner = s.cases[0]
    assert inner.description == "inner"
    assert [(c.number, c.status) for c in inner.subtests] == [(1, "pass"), (2, "fail")]


def test_runner_prefixed_nesting() -> None:
    """kselftest's runner.sh prints a child's TAP behind '# '."""
    s = parse(
        "TAP version 13\n1..1\n# selftests: vm: soft-dirty\n# TAP version 13\n# 1..2\n"
        "# ok 1 a\n# not ok 2 b\nnot ok 1 selftests: vm: soft-dirty # exit=1\n"
    )
    assert len(s.cases) == 1 and s.cases[0].status == "fail"
    assert [c.status for c in s.cases[0].subtests] == ["pass", "fail"]
    # A plain diagnostic that merely starts like a result stays a diagnostic.
    s = parse("TAP version 13\n1..1\n# ok, retrying\nok 1 a\n")
    assert s.diagnostics == ["ok, retrying"] and len(s.cases) == 1


def test_noise_crlf_and_ansi() -> None:
    s = parse("TAP version 13\r\n1..1\r\nsome stderr line\r\n\x1b[32mok 1 a\x1b[0m\r\n")
    assert s.output == ["some stderr line"] and s.cases[0].status == "pass"


def test_todo_and_description_dash() -> None:
    s = parse("TAP version 13\n1..2\nnot ok 1 - flaky # TODO not yet\nok 2 - b\n")
    assert [c.status for c in s.cases] == ["xfail", "pass"]
    assert s.cases[0].description == "flaky" and s.cases[1].description == "b"


CAPTURED = sorted(DATA.glob("*.log")) if DATA.exists() else []


@pytest.mark.parametrize("path", CAPTURED, ids=[p.stem for p in CAPTURED])
def test_captured_outputs(path: Path) -> None:
    """Each capture's first line is '# expect: <outcome> status=<n>' (added when captured)."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# expect:"), f"{path}: first line must be '# expect: ...'"
    fields = lines[0].split()[2:]
    want = fields[0]
    status = next(int(f[7:]) for f in fields if f.startswith("status="))
    timed_out = "timeout" in fields
    bounded = "bounded" in fields
    verdict = ktap.judge(ktap.parse(lines[1:]), ktap.Ending(status, timed_out, None, bounded))
    assert verdict.outcome == want, verdict


def test_captured_mremap_test_details() -> None:
    """mremap_test in a 1G guest: xfails count as passes, the 2 GB cases fail with ENOMEM."""
    s = ktap.parse((DATA / "mremap_test.log").read_text().splitlines()[1:])
    assert s.plan == 14 and len(s.cases) == 14
    assert s.count("xfail") == 3 and s.count("fail") == 4 and s.count("pass") == 7
    assert s.totals["fail"] == 4
    # Its indented continuation lines ('\tmremap time: ...') are output, not nested TAP.
    assert any(line.startswith("mremap time:") for line in s.output)
    v = ktap.judge(s, ktap.Ending(1))
    assert v.reason.startswith("not ok 10 2GB mremap - Source PUD-aligned")
    assert v.reason.endswith("(+3 more)")
