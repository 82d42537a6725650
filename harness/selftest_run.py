"""A selftest run: for each kernel (one, or baseline and patched), build the kernel and the
vm selftests from the same tree, boot, run every test under its deadline, judge each one;
then tabulate the per-test outcome pairs and give the verdict. A plan whose tests are all
guest programs (guest-tests/*.c, e.g. mmstress) builds no selftests at all.

Called by run.execute as its body, so the run directory, metadata, interruption and error
handling are the same as a scenario run's. Results go to results/<run-id>/<kernel>/:
build.log, console-<boot>.log, data-<boot>.log, initramfs-<boot>.cpio and tests/<test>.log.

A test that hangs is killed by busybox `timeout` in the guest and the boot goes on. If the
guest itself dies (a panic, or a hang the in-guest deadline cannot end: the host
backstop), the running test is a crash or a timeout and the kernel is booted again with
the tests not yet run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import initramfs, machine, patches, report, run, runconfig, selftests, source
from harness.formats import bench
from harness.selftests import SelftestPlan, TestResult

GUEST = initramfs.GuestSettings(park_khugepaged=False)  # the tests set khugepaged themselves


@dataclass
class Side:
    label: str
    results: dict[str, TestResult]
    boots: list[dict[str, Any]]


def body(
    cfg: runconfig.RunConfig, state: run.RunState, phases: report.Phases, vm: machine.Machine
) -> int:
    plan = cfg.selftests
    assert plan is not None, "selftest_run.body needs a run config with a selftests section"
    sides_spec = cfg.compare or (("kernel", cfg.kernel),)
    state.selftests = {
        "mode": "compare" if cfg.compare else "single",
        "tests": [{"name": t.name, "command": t.command(), "deadline": t.deadline,
                   "bounded": t.bounded, "guest": t.guest} for t in plan.tests],
        "kernels": {},
    }  # fmt: skip
    accel: list[tuple[str, str]] = []
    sides: list[Side] = []
    for label, spec in sides_spec:
        side_cfg = runconfig.with_kernel(cfg, spec)
        sides.append(_run_side(label, side_cfg, plan, state, phases, vm, accel))
    names = [t.name for t in plan.tests]

    t = phases.start(
        "compare", "per-test outcomes" + (" (baseline vs patched)" * bool(cfg.compare))
    )
    if cfg.compare:
        base, *others = sides
        regressions: list[str] = []
        for other in others:
            pairs = selftests.compare(names, base.results, other.results)
            if other is sides[-1]:
                state.selftests["table"] = [p.to_json() for p in pairs]
            else:
                state.selftests.setdefault("tables", {})[other.label] = [p.to_json() for p in pairs]
            suffix = "" if other is sides[-1] else f" ({other.label})"
            regressions += [p.name + suffix for p in pairs if p.change == "regression"]
            print(selftests.pair_table(pairs, (base.label, other.label)))
        state.selftests["regressions"] = regressions
        phases.finish("compare", t, f"{len(regressions)} regression(s) in {len(names)} tests")
        _print_bench(sides, state)
        if regressions:
            state.verdict = "fail"
            phases.progress.say(f"regressions: {', '.join(regressions)}")
            return run.EXIT_FAIL
        state.verdict = "pass"
        return run.EXIT_PASS
    (only,) = sides
    results = [only.results[n] for n in names]
    bad = [r.name for r in results if r.outcome not in ("pass", "skip")]
    state.selftests["table"] = [r.to_json() for r in results]
    phases.finish("compare", t, f"{len(results) - len(bad)}/{len(results)} passed or skipped")
    print(selftests.single_table(results))
    _print_bench(sides, state)
    state.verdict = "fail" if bad else "pass"
    return run.EXIT_FAIL if bad else run.EXIT_PASS


def _print_bench(sides: list[Side], state: run.RunState) -> None:
    """The mmbench table (guest-tests/mmbench.c), when a test printed its repeats."""
    kernels = []
    for side in sides:
        lines: list[str] = []
        for result in side.results.values():
            if result.output:
                lines += _read_lines(state.run_dir / result.output)
        kernels.append((side.label, bench.parse(lines)))
    if not any(results for _, results in kernels):
        return
    state.selftests["bench"] = {
        label: {f"{op}/{scan}": {"median_us": s.median(), "spread": round(s.spread(), 3),
                                 "repeats": len(s.us),
                                 **{c: s.counter(c) for c in bench.COUNTERS}}
                for (op, scan), s in results.items()}
        for label, results in kernels
    }  # fmt: skip
    print(bench.table(kernels))


def _run_side(label: str, cfg: runconfig.RunConfig, plan: SelftestPlan, state: run.RunState,
              phases: report.Phases, vm: machine.Machine,
              accel_memo: list[tuple[str, str]]) -> Side:  # fmt: skip
    side_dir = state.run_dir / label
    side_dir.mkdir(parents=True, exist_ok=True)
    phases.progress.say(f"== {label} kernel: series {cfg.kernel.series or 'none'}")
    kernel = run.prepare_kernel(cfg, side_dir, phases)
    record: dict[str, Any] = {
        "series": str(cfg.kernel.series) if cfg.kernel.series else None,
        "fragments": [str(f) for f in cfg.kernel.fragments],
        "build": kernel.to_json(),
    }
    state.selftests["kernels"][label] = record  # type: ignore[index]

    built = _build_selftests(label, cfg, plan, side_dir, phases, record)

    results: dict[str, TestResult] = {}
    boots: list[dict[str, Any]] = []
    remaining = list(plan.tests)
    while remaining and len(boots) <= len(plan.tests):
        n = len(boots) + 1
        t = phases.start(f"{label}/guest-{n}", f"initramfs with {len(remaining)} tests")
        jobs = selftests.guest_jobs(plan, remaining)
        image = initramfs.build(
            side_dir / f"initramfs-{n}.cpio", run.GUEST_TESTS, jobs,
            settings=GUEST, extra_files=selftests.guest_files(built),
        )  # fmt: skip
        phases.finish(f"{label}/guest-{n}", t, f"{image.stat().st_size >> 10} KiB")
        if not accel_memo:
            t = phases.start("accel", f"accel: {cfg.machine.accel}")
            accel_memo.append(
                machine.resolve_accel(cfg.machine.accel, kernel.bzimage, image, side_dir)
            )
            phases.finish("accel", t, "{} ({})".format(*accel_memo[0]))
            state.machine.update(accel=accel_memo[0][0], accel_reason=accel_memo[0][1])
        request = machine.BootRequest(
            kernel=kernel.bzimage, initramfs=image, console_log=side_dir / f"console-{n}.log",
            data_log=side_dir / f"data-{n}.log", accel=accel_memo[0][0],
            memory_mb=cfg.machine.memory_mb, cpus=cfg.machine.cpus, cmdline=cfg.kernel.cmdline,
            boot_timeout=cfg.machine.boot_timeout, job_timeout=plan.host_deadline,
            jobs=tuple(j.name for j in jobs),
        )  # fmt: skip
        t = phases.start(f"{label}/boot-{n}", f"QEMU ({request.accel}) -> {request.console_log}")
        with phases.progress.bar(f"{label}: tests", len(remaining)) as bar:
            booted = vm.boot(request, on_line=_progress(phases.progress, remaining, bar))
        console = booted.report
        died_in = booted.timed_out_in if booted.outcome != "done" else None
        phases.finish(
            f"{label}/boot-{n}", t, booted.outcome + (f" in {died_in}" if died_in else "")
        )
        framed = selftests.split_data(_read_lines(request.data_log))
        boot_record: dict[str, Any] = {
            "boot": n, "outcome": booted.outcome, "died_in": died_in, "uname": console.uname,
            "cpus_seen": console.cpus, "seconds": round(booted.seconds, 3),
            "splats": [s.to_json() for s in console.splats],
            "qemu_command": machine.shell_command(booted.argv or machine.qemu_argv(request)),
        }  # fmt: skip
        boots.append(boot_record)
        ran_any = False
        for spec in remaining:
            if spec.name not in console.started and spec.name not in framed:
                continue
            ran_any = True
            result = selftests.judge_test(
                spec, framed.get(spec.name), console, booted.outcome, died_in
            )
            result.boot = n
            result.output = _write_output(side_dir, spec.name, framed.get(spec.name))
            results[spec.name] = result
            phases.progress.say(
                f"  {label} {spec.name}: {result.outcome.upper()}"
                + (f" ({result.reason})" if result.reason else "")
            )
        remaining = [s for s in remaining if s.name not in results]
        if booted.outcome == "done" or not ran_any:
            why = (
                "the guest finished without running it"
                if booted.outcome == "done"
                else f"the guest {booted.outcome} in {died_in or 'boot'} before any test ran"
            )
            for spec in remaining:
                results[spec.name] = TestResult(spec.name, spec.program, spec.args, "not-run",
                                                why, None, None, {}, [], [], boot=n)  # fmt: skip
            remaining = []
    record["boots"] = boots
    record["results"] = [results[t.name].to_json() for t in plan.tests]
    return Side(label, results, boots)


def _build_selftests(label: str, cfg: runconfig.RunConfig, plan: SelftestPlan, side_dir: Path,
                     phases: report.Phases,
                     record: dict[str, Any]) -> selftests.SelftestBuild | None:  # fmt: skip
    """The vm selftest binaries for this kernel's tree; None when the plan runs only guest
    programs (they are in every initramfs), so nothing of the selftests is built."""
    record["selftests_build"] = None
    if not plan.programs:
        return None
    t = phases.start(
        f"{label}/selftests", f"{len(plan.programs)} programs from {selftests.SELFTEST_DIR}"
    )
    src = source.prepare(cfg.kernel.source, cfg.kernel.ref)
    series = patches.read_series(cfg.kernel.series)
    record["series_identity"] = series.identity
    built = selftests.build(src, series, plan.programs, side_dir / "build.log")
    record["selftests_build"] = built.to_json()
    how = "cached, no make" if built.cached else f"built in {built.seconds:.1f}s"
    phases.finish(f"{label}/selftests", t, f"selftests {built.key}: {how}")
    return built


def _write_output(side_dir: Path, name: str, framed: selftests.Framed | None) -> str | None:
    if framed is None:
        return None
    path = side_dir / "tests" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(framed.lines) + ("\n" if framed.lines else ""))
    return str(path.relative_to(side_dir.parent))


def _read_lines(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    return path.read_bytes().decode(errors="replace").splitlines()


def _progress(progress: report.Progress, tests: list[selftests.TestSpec],
              bar: report.Bar | None = None):  # type: ignore[no-untyped-def]  # fmt: skip
    """Console hook: a line when the guest is up and when each test starts, with its
    deadline; the bar counts the tests finished."""
    deadlines = {t.name: t.deadline for t in tests}
    seen: set[str] = set()

    def on_line(line: str) -> None:
        if initramfs.MARK_BOOTED in line and "booted" not in seen:
            seen.add("booted")
            progress.say("boot: guest up, running tests")
        elif initramfs.MARK_BEGIN in line:
            name = line.split(initramfs.MARK_BEGIN, 1)[1].strip()
            if name in deadlines:
                progress.say(f"boot:   {name} (deadline {deadlines[name]:.0f}s)")
        elif initramfs.MARK_END in line and bar is not None:
            bar.advance(1, line.split(initramfs.MARK_END, 1)[1].split()[0])

    return on_line
