"""Selftest plans, guest framing, per-test judgement, the comparison, and the run body with
the machine replaced by a scripted one (hangs, panics, reboots), all offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import (
    build,
    console,
    initramfs,
    machine,
    patches,
    run,
    runconfig,
    schema,
    selftest_run,
    selftests,
    source,
)
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "frag.config").write_text("CONFIG_KSM=y\n")
    (tmp_path / "series").write_text("")
    path = tmp_path / "run.yaml"
    path.write_text("kernel:\n  fragments: [frag.config]\n" + body)
    return path


# --- plan ------------------------------------------------------------------------------------


def test_plan_from_the_shipped_config() -> None:
    for needed in ("kernel-patches/series", "configs/kconfig/series.config"):
        if not (ROOT / needed).exists():
            pytest.skip(f"{needed} (the patched side) is not in this checkout")
    cfg = runconfig.load(ROOT / "configs" / "selftests.yaml")
    plan = cfg.selftests
    assert plan is not None
    names = [t.name for t in plan.tests]
    for required in ("split_huge_page_test", "khugepaged", "transhuge-stress", "mremap_test",
                     "mremap_dontunmap", "madv_populate", "soft-dirty", "mlock2-tests",
                     "compaction_test"):  # fmt: skip
        assert required in names
    for program in ("gup_test", "ksm_tests", "userfaultfd"):
        assert program in plan.programs
    stress = next(t for t in plan.tests if t.name == "transhuge-stress")
    assert stress.bounded and stress.deadline == 30
    assert [label for label, _ in cfg.compare] == ["baseline", "patched"]
    assert cfg.compare[0][1].series is None
    assert cfg.compare[1][1].series == ROOT / "kernel-patches" / "series"


def test_plan_fields_and_defaults(tmp_path: Path) -> None:
    cfg = runconfig.load(write_config(tmp_path, """\
selftests:
  deadline: 60
  swap: 64M
  setup: ["echo 1 > /proc/sys/vm/overcommit_memory"]
  tests:
    - soft-dirty
    - {name: uffd, program: userfaultfd, args: [anon, 20, 16], deadline: 5}
compare:
  baseline: {series: none}
  patched: {series: series, cmdline: "numa=off"}
"""))  # fmt: skip
    plan = cfg.selftests
    assert plan is not None and plan.swap_mb == 64
    assert plan.programs == ("soft-dirty", "userfaultfd")
    assert plan.tests[0] == selftests.TestSpec("soft-dirty", "soft-dirty", (), 60.0)
    assert plan.tests[1].args == ("anon", "20", "16") and plan.tests[1].deadline == 5
    assert plan.host_deadline == 60 + selftests.HOST_GRACE
    patched = dict(cfg.compare)["patched"]
    assert patched.series == tmp_path / "series" and patched.cmdline == "numa=off"
    assert patched.fragments == (tmp_path / "frag.config",)  # inherited from kernel:


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("selftests:\n  tests: [nosuchtest]\n", "run.yaml:4 (key 'selftests.tests[0]')"),
        ("selftests:\n  tests: [soft-dirty, soft-dirty]\n", "already used"),
        ("selftests:\n  tests: [{name: 'a b', program: gup_test}]\n", "no spaces"),
        ("selftests:\n  tests: []\n", "at least one test"),
        ("selftests:\n  tests: [{program: gup_test, deadline: 0}]\n", "at least 1"),
        ("compare:\n  baseline: {}\n  patched: {}\n", "needs a 'selftests' section"),
        ("selftests:\n  tests: [soft-dirty]\ncompare:\n  baseline: {}\n", "'patched'"),
        ("selftests:\n  tests: [soft-dirty]\ncompare:\n  baseline: {series: nope}\n"
         "  patched: {}\n", "patch series 'nope' not found"),
    ],
)  # fmt: skip
def test_plan_errors_name_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        runconfig.load(write_config(tmp_path, body))
    assert message in str(info.value) and "run.yaml" in str(info.value)


@pytest.fixture
def guest_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """guest-tests/ with two programs, mmstress and mmwork, in place of the real one."""
    d = tmp_path / "guest-tests"
    d.mkdir()
    for name in ("mmstress", "mmwork"):
        (d / f"{name}.c").write_text("int main(void) { return 0; }\n")
    monkeypatch.setattr(selftests, "GUEST_TESTS", d)
    return d


def test_plan_names_a_guest_program(tmp_path: Path, guest_dir: Path) -> None:
    cfg = runconfig.load(write_config(tmp_path, """\
selftests:
  tests:
    - mmstress
    - {name: stress-short, program: mmstress, args: ["-t", "5"], deadline: 60}
    - soft-dirty
"""))  # fmt: skip
    plan = cfg.selftests
    assert plan is not None
    assert [(t.name, t.program, t.guest) for t in plan.tests] == [
        ("mmstress", "mmstress", True), ("stress-short", "mmstress", True),
        ("soft-dirty", "soft-dirty", False),
    ]  # fmt: skip
    # Only the vm selftests are built; the guest programs are in every initramfs.
    assert plan.programs == ("soft-dirty",) and plan.guest_programs == ("mmstress",)
    assert plan.tests[1].command() == "/bin/mmstress -t 5"
    assert plan.tests[2].command() == "./soft-dirty"


def test_unknown_program_names_both_sets(tmp_path: Path, guest_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        runconfig.load(write_config(tmp_path, "selftests:\n  tests:\n    - soft-dirty\n"
                                              "    - {name: s, program: mmstres}\n"))  # fmt: skip
    message = str(info.value)
    assert "run.yaml:6 (key 'selftests.tests[1].program')" in message
    assert "'mmstres' is neither a 6.1 vm selftest program nor a guest program" in message
    assert "vm selftests: compaction_test, gup_test," in message
    assert message.rstrip().endswith("guest programs: mmstress, mmwork")
    for c in guest_dir.glob("*.c"):
        c.unlink()
    with pytest.raises(ConfigError, match=r"guest programs: \(none\)"):
        runconfig.load(write_config(tmp_path, "selftests:\n  tests: [mmstress]\n"))


def test_parse_plan_takes_the_guest_programs_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("tests: [stress, gup_test]\n")
    plan = selftests.parse_plan(schema.load(path), guest=["stress", "gup_test"])
    # A name that is both is the vm selftest.
    assert [(t.program, t.guest) for t in plan.tests] == [("stress", True), ("gup_test", False)]
    with pytest.raises(ConfigError, match="guest programs: other"):
        selftests.parse_plan(schema.load(path), guest=["other"])


def test_guest_program_command_runs_from_bin_in_tmp() -> None:
    spec = selftests.TestSpec("mmstress", "mmstress", ("-p", "4", "-t", "60"), 300.0,
                              guest=True)  # fmt: skip
    cmd = selftests.test_command(spec).splitlines()
    assert "cd /tmp" in cmd and f"cd {selftests.GUEST_DIR}" not in cmd
    assert "timeout -s KILL 300 /bin/mmstress -p 4 -t 60 > /dev/ttyS1 2>&1 < /dev/null" in cmd
    assert cmd.index("cd /tmp") < cmd.index("echo @@SELFTEST-BEGIN mmstress > /dev/ttyS1")
    assert selftests.guest_files(None) == {}


def test_the_shipped_stress_config() -> None:
    """configs/stress.yaml runs mmstress for 60 s on series-debug.yaml's kernel (one cache
    entry for both)."""
    for needed in ("kernel-patches/series", "configs/kconfig/series.config"):
        if not (ROOT / needed).exists():
            pytest.skip(f"{needed} (the patched kernel) is not in this checkout")
    cfg = runconfig.load(ROOT / "configs" / "stress.yaml")
    debug = runconfig.load(ROOT / "configs" / "series-debug.yaml")
    assert cfg.kernel == debug.kernel and not cfg.compare
    assert cfg.selftests is not None
    (spec,) = cfg.selftests.tests
    assert (spec.name, spec.program, spec.guest) == ("mmstress", "mmstress", True)
    assert cfg.selftests.programs == ()  # no selftests build
    args = dict(zip(spec.args[::2], spec.args[1::2], strict=True))
    assert int(args["-t"]) >= 60 and int(args["-i"]) <= int(args["-t"])
    # Room for the run, its audits under TCG, and the end.
    assert spec.deadline >= 2 * int(args["-t"]) and not spec.bounded
    assert (ROOT / "guest-tests" / "mmstress.c").exists()


def test_sysctl_is_set_for_one_test_and_restored(tmp_path: Path) -> None:
    cfg = runconfig.load(write_config(tmp_path, """\
selftests:
  tests:
    - {name: mremap_test, sysctl: {vm.overcommit_memory: 1, vm.max_map_count: 65530}}
"""))  # fmt: skip
    assert cfg.selftests is not None
    spec = cfg.selftests.tests[0]
    assert spec.sysctl == (("vm.overcommit_memory", "1"), ("vm.max_map_count", "65530"))
    cmd = selftests.test_command(spec).splitlines()
    assert cmd[:4] == [
        "old0=$(cat /proc/sys/vm/overcommit_memory)",
        "old1=$(cat /proc/sys/vm/max_map_count)",
        "echo 1 > /proc/sys/vm/overcommit_memory",
        "echo 65530 > /proc/sys/vm/max_map_count",
    ]
    run_at = next(i for i, line in enumerate(cmd) if line.startswith("timeout"))
    restore = cmd.index('echo "$old0" > /proc/sys/vm/overcommit_memory')
    assert run_at < restore < next(i for i, line in enumerate(cmd) if "SELFTEST-END" in line)


@pytest.mark.parametrize(
    ("sysctl", "message"),
    [("[1]", "expected a mapping"), ("{'vm/x': 1}", "not a sysctl name"),
     ("{vm.a: [1]}", "expected a scalar value")],
)  # fmt: skip
def test_sysctl_errors(tmp_path: Path, sysctl: str, message: str) -> None:
    body = f"selftests:\n  tests:\n    - {{name: m, program: mremap_test, sysctl: {sysctl}}}\n"
    with pytest.raises(ConfigError) as info:
        runconfig.load(write_config(tmp_path, body))
    assert message in str(info.value) and "selftests.tests[0].sysctl" in str(info.value)


# --- guest framing and per-test judgement -----------------------------------------------------


def test_test_command_frames_output_and_kills_at_the_deadline() -> None:
    spec = selftests.TestSpec("uffd", "userfaultfd", ("anon", "20", "16"), 120.0)
    cmd = selftests.test_command(spec)
    assert "timeout -s KILL 120 ./userfaultfd anon 20 16 > /dev/ttyS1 2>&1 < /dev/null" in cmd
    assert cmd.index("@@SELFTEST-BEGIN uffd") < cmd.index("timeout") < cmd.index("kill -9 -1")
    assert "status=$st start=$t0 end=$t1" in cmd
    assert "timeout" in initramfs.BUSYBOX_APPLETS
    plan = selftests.SelftestPlan((spec,), swap_mb=128)
    jobs = selftests.guest_jobs(plan)
    assert [j.name for j in jobs] == [selftests.SETUP_JOB, "uffd"]
    assert "swapon /dev/ram0" in (jobs[0].command or "")


DATA = """\
garbage before any frame
@@SELFTEST-BEGIN soft-dirty\r
TAP version 13\r
1..2\r
ok 1 a\r
not ok 2 b\r
@@SELFTEST-END soft-dirty status=1 start=10.50 end=12.75\r
@@SELFTEST-BEGIN stress
partial line without newline@@SELFTEST-END stress status=137 start=13.00 end=43.01
@@SELFTEST-BEGIN hang
TAP version 13
"""


def test_split_data() -> None:
    framed = selftests.split_data(DATA.splitlines())
    assert list(framed) == ["soft-dirty", "stress", "hang"]
    sd = framed["soft-dirty"]
    assert sd.lines == ["TAP version 13", "1..2", "ok 1 a", "not ok 2 b"]
    assert (sd.status, sd.seconds, sd.ended) == (1, 2.25, True)
    assert framed["stress"].lines == ["partial line without newline"]
    assert framed["stress"].status == 137 and framed["stress"].seconds == 30.01
    assert not framed["hang"].ended and framed["hang"].status is None


def _console(lines: list[str]) -> console.ConsoleReport:
    return console.parse_console(lines)


def test_judge_test_outcomes() -> None:
    framed = selftests.split_data(DATA.splitlines())
    quiet = _console(["@@HARNESS-BEGIN soft-dirty", "@@HARNESS-END soft-dirty status=1"])
    sd = selftests.TestSpec("soft-dirty", "soft-dirty")
    r = selftests.judge_test(sd, framed["soft-dirty"], quiet, "done", None)
    assert (r.outcome, r.reason, r.seconds) == ("fail", "not ok 2 b", 2.25)
    assert [c["status"] for c in r.cases] == ["pass", "fail"]

    stress = selftests.TestSpec("stress", "transhuge-stress", ("64",), 30.0, bounded=True)
    assert selftests.judge_test(stress, framed["stress"], quiet, "done", None).outcome == "pass"
    unbounded = selftests.TestSpec("stress", "transhuge-stress", ("64",), 30.0)
    r = selftests.judge_test(unbounded, framed["stress"], quiet, "done", None)
    assert (r.outcome, r.reason) == ("timeout", "killed at its deadline")
    # SIGKILL well before the deadline is not a timeout (the OOM killer, say).
    early = selftests.TestSpec("stress", "transhuge-stress", ("64",), 300.0)
    r = selftests.judge_test(early, framed["stress"], quiet, "done", None)
    assert (r.outcome, r.reason) == ("fail", "killed by SIGKILL")

    hang = selftests.TestSpec("hang", "khugepaged")
    r = selftests.judge_test(hang, framed["hang"], quiet, "timeout", "hang")
    assert r.outcome == "timeout" and "host killed the guest" in r.reason
    panicked = _console(["@@HARNESS-BEGIN hang", "Kernel panic - not syncing: Fatal exception"])
    r = selftests.judge_test(hang, framed["hang"], panicked, "panic", "hang")
    assert r.outcome == "crash"
    assert r.reason == "kernel panic: Kernel panic - not syncing: Fatal exception"
    r = selftests.judge_test(hang, None, quiet, "done", None)
    assert r.outcome == "not-run"


def test_a_kernel_warning_fails_a_passing_test() -> None:
    framed = selftests.split_data(["@@SELFTEST-BEGIN t", "ok", "@@SELFTEST-END t status=0"])
    report = _console([
        "@@HARNESS-BEGIN t",
        "------------[ cut here ]------------",
        "WARNING: CPU: 1 PID: 99 at mm/rmap.c:1234 page_remove_rmap+0x1/0x2",
        "@@HARNESS-END t status=0",
    ])  # fmt: skip
    r = selftests.judge_test(selftests.TestSpec("t", "gup_test"), framed["t"], report, "done", None)
    assert r.outcome == "fail" and r.reason.startswith("kernel warning:")


# --- comparison ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "patched", "change"),
    [
        ("pass", "pass", "same"), ("pass", "fail", "regression"), ("pass", "timeout", "regression"),
        ("pass", "crash", "regression"), ("pass", "not-run", "regression"),
        ("pass", "skip", "changed"), ("skip", "fail", "changed"), ("fail", "fail", "same"),
        ("fail", "pass", "fixed"), ("timeout", "pass", "fixed"), ("skip", "skip", "same"),
    ],
)  # fmt: skip
def test_classify(baseline: str, patched: str, change: str) -> None:
    assert selftests.classify(baseline, patched) == change


def _result(name: str, outcome: str, reason: str = "") -> selftests.TestResult:
    return selftests.TestResult(name, name, (), outcome, reason, 0, 1.0, {}, [], [])


def test_compare_and_table() -> None:
    base = {"a": _result("a", "pass"), "b": _result("b", "skip", "no hugetlb"),
            "c": _result("c", "pass")}  # fmt: skip
    patched = {"a": _result("a", "pass"), "b": _result("b", "skip", "no hugetlb"),
               "c": _result("c", "fail", "not ok 3 split")}  # fmt: skip
    pairs = selftests.compare(["a", "b", "c", "d"], base, patched)
    assert [(p.name, p.baseline, p.patched, p.change) for p in pairs] == [
        ("a", "pass", "pass", "same"), ("b", "skip", "skip", "same"),
        ("c", "pass", "fail", "regression"), ("d", "not-run", "not-run", "same"),
    ]  # fmt: skip
    table = selftests.pair_table(pairs)
    assert "c     PASS      FAIL      regression  <-- REGRESSION" in table
    assert "patched: not ok 3 split" in table and "baseline: no hugetlb" in table


# --- the run body, with a scripted machine ----------------------------------------------------


class ScriptedMachine:
    """Plays each test as scripted: ('ok', status, lines) | ('hang',) | ('panic',).

    It runs only the jobs the initramfs was given, so a reboot after a hang or a panic is
    visible: the next boot's job list starts after the test that died.
    """

    def __init__(self, script: dict[str, tuple[Any, ...]]) -> None:
        self.script = script
        self.boots: list[tuple[str, ...]] = []

    def boot(self, request: machine.BootRequest, on_line: Any = None) -> machine.BootResult:
        self.boots.append(request.jobs)
        con = ["Linux version 6.1.192", "@@HARNESS-BOOTED 6.1.192 cpus=2"]
        data: list[str] = []
        outcome, where = "done", None
        for job in request.jobs:
            con.append(f"@@HARNESS-BEGIN {job}")
            if job == selftests.SETUP_JOB:
                con.append(f"@@HARNESS-END {job} status=0")
                continue
            kind, *rest = self.script[job]
            data.append(f"{selftests.MARK_BEGIN} {job}")
            if kind == "hang":
                data.append("TAP version 13")
                outcome, where = "timeout", job
                break
            if kind == "panic":
                con += ["BUG: kernel NULL pointer dereference, address: 0000000000000008",
                        "Kernel panic - not syncing: Fatal exception"]  # fmt: skip
                outcome, where = "panic", job
                break
            status, lines = rest
            data += [*lines, f"{selftests.MARK_END} {job} status={status} start=1.0 end=2.5"]
            con.append(f"@@HARNESS-END {job} status={status}")
        else:
            con.append("@@HARNESS-DONE")
        request.console_log.write_text("\n".join(con) + "\n")
        assert request.data_log is not None
        request.data_log.write_text("\n".join(data) + "\n")
        parser = console.ConsoleParser()
        for line in con:
            parser.feed(line)
            if on_line:
                on_line(line)
        return machine.BootResult(parser.report, outcome, where, 1.0, machine.qemu_argv(request))


@pytest.fixture
def calls() -> dict[str, list[Any]]:
    """What the fakes were asked for: selftests builds, source preparations, extra files."""
    return {"selftests_build": [], "source_prepare": [], "extra_files": []}


@pytest.fixture
def fakes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, calls: dict[str, list[Any]]
) -> list[str]:
    """No kernel build, no selftests build, no cpio: record which series each side used."""
    monkeypatch.setenv("FOLIO_HARNESS_CACHE", str(tmp_path / "cache"))
    built: list[str] = []
    bzimage = tmp_path / "bzImage"
    bzimage.write_bytes(b"not a kernel")

    def prepare_kernel(cfg, run_dir, phases, state=None, force=False):  # type: ignore[no-untyped-def]
        built.append(str(cfg.kernel.series))
        return build.BuildResult("key", bzimage, bzimage, bzimage, True, "0" * 40, "c" * 64,
                                 "gcc", tmp_path, {})  # fmt: skip

    def selftests_build(src, series, programs, log_path):  # type: ignore[no-untyped-def]
        calls["selftests_build"].append(list(programs))
        return selftests.SelftestBuild("stkey", tmp_path, {p: bzimage for p in programs},
                                       True, 0.0)  # fmt: skip

    def cpio(dest, guest_tests, jobs, settings=None, interactive=False, extra_files=None):  # type: ignore[no-untyped-def]
        assert settings is not None and not settings.park_khugepaged
        assert all(k.startswith("selftests/") for k in extra_files or {})
        calls["extra_files"].append(dict(extra_files or {}))
        dest.write_bytes(b"cpio")
        return dest

    monkeypatch.setattr(run, "prepare_kernel", prepare_kernel)
    monkeypatch.setattr(selftests, "build", selftests_build)
    monkeypatch.setattr(initramfs, "build", cpio)
    monkeypatch.setattr(source, "prepare", lambda s, r=None: calls["source_prepare"].append(s))
    monkeypatch.setattr(patches, "read_series", lambda p: patches.Series(p, ()))
    monkeypatch.setattr(machine, "resolve_accel", lambda *a: ("tcg", "test"))
    return built


TAP_PASS = ("ok", 0, ["TAP version 13", "1..1", "ok 1 a"])
TAP_FAIL = ("ok", 1, ["TAP version 13", "1..1", "not ok 1 a"])
SKIP = ("ok", 4, ["no userfaultfd"])


def _execute(tmp_path: Path, body: str, vm: ScriptedMachine) -> tuple[int, dict[str, Any]]:
    cfg = runconfig.load(write_config(tmp_path, body))
    code = run.execute(cfg, tmp_path / "results", ["harness", "run"], machine_impl=vm,
                       body=selftest_run.body)  # fmt: skip
    return code, json.loads((tmp_path / "results" / "latest" / "results.json").read_text())


PLAN = "selftests:\n  tests: [soft-dirty, khugepaged, {name: uffd, program: userfaultfd}]\n"
COMPARE = "compare:\n  baseline: {series: none}\n  patched: {series: series}\n"


def test_hang_is_a_timeout_and_the_run_goes_on(tmp_path: Path, fakes: list[str]) -> None:
    vm = ScriptedMachine({"soft-dirty": TAP_PASS, "khugepaged": ("hang",), "uffd": SKIP})
    code, results = _execute(tmp_path, PLAN, vm)
    assert vm.boots == [
        (selftests.SETUP_JOB, "soft-dirty", "khugepaged", "uffd"),
        (selftests.SETUP_JOB, "uffd"),
    ]
    table = {r["name"]: r for r in results["selftests"]["table"]}
    assert table["soft-dirty"]["outcome"] == "pass"
    assert table["khugepaged"]["outcome"] == "timeout" and table["khugepaged"]["boot"] == 1
    assert table["uffd"]["outcome"] == "skip" and table["uffd"]["reason"] == "no userfaultfd"
    assert table["uffd"]["boot"] == 2
    assert code == run.EXIT_FAIL and results["verdict"] == "fail"
    out = tmp_path / "results" / "latest" / table["soft-dirty"]["output"]
    assert out.read_text() == "TAP version 13\n1..1\nok 1 a\n"


def test_compare_regression_fails_the_run(tmp_path: Path, fakes: list[str]) -> None:
    class PerKernel(ScriptedMachine):
        def boot(self, request: machine.BootRequest, on_line: Any = None) -> machine.BootResult:
            patched = "patched" in str(request.console_log)
            self.script = {"soft-dirty": TAP_PASS, "uffd": SKIP,
                           "khugepaged": ("panic",) if patched else TAP_FAIL}  # fmt: skip
            return super().boot(request, on_line)

    vm = PerKernel({})
    code, results = _execute(tmp_path, PLAN + COMPARE, vm)
    assert fakes == ["None", str(tmp_path / "series")]
    pairs = {p["name"]: p for p in results["selftests"]["table"]}
    assert (pairs["soft-dirty"]["baseline"], pairs["soft-dirty"]["patched"]) == ("pass", "pass")
    # fail -> crash is not a regression (it did not pass unpatched) ...
    assert pairs["khugepaged"]["change"] == "changed"
    assert pairs["uffd"]["baseline_reason"] == "no userfaultfd"
    assert results["selftests"]["regressions"] == [] and code == run.EXIT_PASS
    # ... pass -> crash is.
    vm2 = PerKernel({})
    vm2.boot = _flip(vm2)  # type: ignore[method-assign]
    code, results = _execute(tmp_path, PLAN + COMPARE, vm2)
    assert results["selftests"]["regressions"] == ["khugepaged"]
    assert code == run.EXIT_FAIL and results["verdict"] == "fail"
    kernels = results["selftests"]["kernels"]
    assert list(kernels) == ["baseline", "patched"]
    assert [b["outcome"] for b in kernels["patched"]["boots"]] == ["panic", "done"]


def _flip(vm: ScriptedMachine):  # type: ignore[no-untyped-def]
    def boot(request: machine.BootRequest, on_line: Any = None) -> machine.BootResult:
        patched = "patched" in str(request.console_log)
        vm.script = {"soft-dirty": TAP_PASS, "uffd": SKIP,
                     "khugepaged": ("panic",) if patched else TAP_PASS}  # fmt: skip
        return ScriptedMachine.boot(vm, request, on_line)

    return boot


def test_guest_dead_before_any_test(tmp_path: Path, fakes: list[str]) -> None:
    class NoBoot(ScriptedMachine):
        def boot(self, request: machine.BootRequest, on_line: Any = None) -> machine.BootResult:
            self.boots.append(request.jobs)
            request.console_log.write_text("")
            return machine.BootResult(console.ConsoleReport(), "timeout", "boot", 1.0, [])

    vm = NoBoot({})
    code, results = _execute(tmp_path, PLAN, vm)
    assert len(vm.boots) == 1
    assert {r["outcome"] for r in results["selftests"]["table"]} == {"not-run"}
    assert code == run.EXIT_FAIL


MMSTRESS_PASS = ("ok", 0, [
    "TAP version 13", "1..3", "ok 1 - audit 1 at 5.0s: checked=3 mismatches=0",
    "ok 2 - workers finished without errors: ops=9 errors=0",
    "ok 3 - audit after exit: checked=0 mismatches=0",
])  # fmt: skip


def test_a_plan_of_guest_programs_builds_no_selftests(
    tmp_path: Path, fakes: list[str], calls: dict[str, list[Any]], guest_dir: Path
) -> None:
    vm = ScriptedMachine({"mmstress": MMSTRESS_PASS})
    plan = "selftests:\n  tests:\n    - {program: mmstress, args: [-t, '60'], deadline: 300}\n"
    code, results = _execute(tmp_path, plan, vm)
    assert calls["selftests_build"] == [] and calls["source_prepare"] == []
    assert calls["extra_files"] == [{}]
    assert vm.boots == [(selftests.SETUP_JOB, "mmstress")]
    st = results["selftests"]
    assert st["mode"] == "single" and list(st["kernels"]) == ["kernel"]
    assert st["kernels"]["kernel"]["selftests_build"] is None
    assert st["tests"] == [{"name": "mmstress", "command": "/bin/mmstress -t 60",
                            "deadline": 300.0, "bounded": False, "guest": True}]  # fmt: skip
    (row,) = st["table"]
    assert (row["outcome"], row["counts"]) == ("pass", {"pass": 3})
    assert code == run.EXIT_PASS and results["verdict"] == "pass"


def test_a_mixed_plan_builds_only_the_vm_selftests(
    tmp_path: Path, fakes: list[str], calls: dict[str, list[Any]], guest_dir: Path
) -> None:
    vm = ScriptedMachine({"mmstress": MMSTRESS_PASS, "soft-dirty": TAP_PASS})
    code, _ = _execute(tmp_path, "selftests:\n  tests: [mmstress, soft-dirty]\n", vm)
    assert calls["selftests_build"] == [["soft-dirty"]]
    assert [sorted(files) for files in calls["extra_files"]] == [["selftests/soft-dirty"]]
    assert code == run.EXIT_PASS


# --- build cache key -------------------------------------------------------------------------


def _git(tree: Path, *args: str) -> None:
    source.git(tree, *args)


def test_build_is_keyed_by_what_the_binaries_are_made_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A series touching mm/ shares the baseline's binaries, found without the tree or its
    lock; one touching the selftests or a uAPI header gets its own; a second call with the
    same inputs runs no make."""
    monkeypatch.setenv("FOLIO_HARNESS_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "tree"
    for rel in ("tools/testing/selftests/vm/gup_test.c", "include/uapi/linux/mman.h",
                "mm/memory.c"):  # fmt: skip
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(f"/* {rel} */\n")
    _git(tree, "init", "-q")
    _git(tree, "add", "-A")
    _git(tree, "commit", "-q", "-m", "base")
    _git(tree, "tag", source.BASE_TAG)
    makes: list[list[str]] = []
    applied: list[str] = []

    def fake_make(tree_: Path, out: Path, programs: list[str], log: Any, log_path: Path) -> None:
        makes.append(programs)
        (out / "bin").mkdir()
        for p in programs:
            (out / "bin" / p).write_text("elf")

    def fake_apply(src: source.SourceTree, series: patches.Series) -> str:
        """Check out the base, then 'apply' each patch: rewrite the file it names."""
        _git(tree, "checkout", "-q", "-f", "-B", "series", source.BASE_TAG)
        for patch in series.patches:
            rel = patch.path.read_text().split()[2][2:]
            (tree / rel).write_text(f"changed by {patch.path.name}\n")
            _git(tree, "commit", "-q", "-am", patch.path.name)
        applied.append(str(series.path))
        return "HEAD"

    monkeypatch.setattr(selftests, "_make", fake_make)
    monkeypatch.setattr(patches, "apply", fake_apply)
    src = source.SourceTree("tar-test", "test", tree, "6.1.192")
    log = tmp_path / "build.log"

    def series_touching(rel: str) -> patches.Series:
        patch = tmp_path / f"{rel.replace('/', '-')}.patch"
        patch.write_text(f"diff --git a/{rel} b/{rel}\n--- a/{rel}\n+++ b/{rel}\n")
        return patches.Series(patch, (patches.Patch(patch, "0" * 64),))

    base = patches.Series(None, ())
    first = selftests.build(src, base, ["gup_test"], log)
    assert not first.cached and first.programs["gup_test"].read_text() == "elf"
    assert applied == ["None"]
    again = selftests.build(src, base, ["gup_test"], log)
    assert again.cached and again.key == first.key and len(makes) == 1
    assert applied == ["None"]  # cached and untouched: neither the tree nor the lock

    mm = selftests.build(src, series_touching("mm/memory.c"), ["gup_test"], log)
    assert mm.key == first.key and mm.cached and len(applied) == 1
    uapi = selftests.build(src, series_touching("include/uapi/linux/mman.h"), ["gup_test"], log)
    assert uapi.key != first.key and not uapi.cached and len(applied) == 2
    st = selftests.build(
        src, series_touching("tools/testing/selftests/vm/gup_test.c"), ["gup_test"], log
    )
    assert st.key not in (first.key, uapi.key)
    assert selftests.build(src, base, ["gup_test", "ksm_tests"], log).key != first.key
    assert "found in the cache: no make" in log.read_text()


def test_more_kernels_compare_with_the_baseline_and_show_the_bench(
    tmp_path: Path, fakes: list[str]
) -> None:
    def bench(us: tuple[int, ...], rmap: int) -> tuple[str, int, list[str]]:
        lines = ["TAP version 13", "1..1"]
        lines += [f"# mmbench op=zap-anon scan=- rep={i} us={t} rmap_calls={rmap} ptes_read=0"
                  for i, t in enumerate(us)]  # fmt: skip
        return ("ok", 0, [*lines, "ok 1 a"])

    class PerKernel(ScriptedMachine):
        def boot(self, request: machine.BootRequest, on_line: Any = None) -> machine.BootResult:
            log = str(request.console_log)
            self.script = {
                "soft-dirty": ("panic",) if "/middle/" in log else TAP_PASS,
                "uffd": bench((100, 300, 200), 8) if "/patched/" in log else bench((90, 110), 8),
                "khugepaged": TAP_PASS,
            }
            return super().boot(request, on_line)

    three = COMPARE.replace("  patched:", "  middle: {series: series}\n  patched:")
    code, results = _execute(tmp_path, PLAN + three, PerKernel({}))
    assert list(results["selftests"]["kernels"]) == ["baseline", "middle", "patched"]
    # The middle kernel is compared with the baseline too, and its regression fails the run.
    assert results["selftests"]["regressions"] == ["soft-dirty (middle)"]
    assert code == run.EXIT_FAIL
    middle = {p["name"]: p for p in results["selftests"]["tables"]["middle"]}
    assert middle["soft-dirty"]["change"] == "regression"
    # mmbench's repeats: medians, spreads and counters per kernel.
    zap = results["selftests"]["bench"]["patched"]["zap-anon/-"]
    assert zap["median_us"] == 200 and zap["spread"] == 1.0 and zap["repeats"] == 3
    assert zap["rmap_calls"] == 8
    assert results["selftests"]["bench"]["baseline"]["zap-anon/-"]["median_us"] == 100


def test_compare_side_labels_are_checked(tmp_path: Path) -> None:
    body = PLAN + COMPARE.replace("  patched:", "  'a b': {}\n  patched:")
    with pytest.raises(ConfigError) as info:
        runconfig.load(write_config(tmp_path, body))
    assert "compare side 'a b'" in str(info.value) and "run.yaml:" in str(info.value)
