"""The run: config -> source -> patches+kconfig+build -> initramfs -> boot -> parse -> verdict.

Everything a run produces goes to results/<run-id>/ as it happens, so an interrupted or
crashed run keeps its logs and partial results; results.json is rewritten at the end with
whatever verdict could be reached.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    build,
    cache,
    compare,
    early_judge,
    initramfs,
    machine,
    model,
    patches,
    report,
    runconfig,
    source,
    workload,
)
from harness.errors import HarnessError
from harness.formats import cases, write

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GUEST_TESTS = PROJECT_ROOT / "guest-tests"
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunState:
    """What is known so far; serialised at every exit, normal or not."""

    config: runconfig.RunConfig
    run_dir: Path
    argv: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    kernel: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    splats: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = "error"
    error: str | None = None
    selftests: dict[str, Any] | None = None  # selftest runs (selftest_run.py)
    rmap_stats: dict[str, dict[str, int]] | None = None  # series' rmap calls, summed

    def results(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.selftests is not None:
            extra["selftests"] = self.selftests
        if self.rmap_stats is not None:
            extra["rmap_stats"] = self.rmap_stats
        return {
            "verdict": self.verdict,
            "error": self.error,
            "run_id": self.run_dir.name,
            "config": str(self.config.path),
            "kernel": self.kernel,
            "machine": self.machine,
            "splats": self.splats,
            "scenarios": self.scenarios,
            **extra,
        }


def new_run_dir(results_root: Path, config_path: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{config_path.stem}"
    run_dir = results_root / base
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = results_root / f"{base}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def _input_identities(cfg: runconfig.RunConfig, series: patches.Series) -> dict[str, Any]:
    def entry(path: Path) -> dict[str, str]:
        return {"path": str(path), "sha256": cache.sha256_file(path)}

    return {
        "config": entry(cfg.path),
        "workloads": [entry(p) for p in cfg.workload_files],
        "fragments": [entry(p) for p in cfg.kernel.fragments],
        "series": (
            {"path": str(series.path), "identity": series.identity,
             "patches": [{"path": str(p.path), "sha256": p.sha256} for p in series.patches]}
            if series.path else None
        ),
        "guest_programs": [entry(p) for p in sorted(GUEST_TESTS.glob("*.c"))],
        "busybox": entry(initramfs.find_busybox()),
    }  # fmt: skip


@dataclass(frozen=True)
class KernelVariant:
    """A kernel other than the config's own: a prefix of its series, or the series plus a
    patch, built in a given build directory (bisect builds every prefix in one)."""

    series: patches.Series
    build_dir: Path | None = None
    # Ignore requested options no Kconfig file of this tree defines yet (a prefix of the
    # series that adds them).
    lenient_kconfig: bool = False


def prepare_kernel(
    cfg: runconfig.RunConfig,
    run_dir: Path,
    phases: report.Phases,
    state: RunState | None = None,
    force: bool = False,
    variant: KernelVariant | None = None,
) -> build.BuildResult:
    """Source, series and build phases (shared by run, build and boot)."""
    t = phases.start("source", f"preparing {cfg.kernel.source}")
    src = source.prepare(cfg.kernel.source, cfg.kernel.ref)
    phases.finish("source", t, f"{src.description} = Linux {src.version} ({src.identity})")

    series = variant.series if variant else patches.read_series(cfg.kernel.series)
    what = f"series {series.path} ({len(series.patches)} patches)" if series.patches else "baseline"
    t = phases.start(
        "build",
        f"{what}, {cfg.kernel.base_config} + "
        f"{', '.join(p.name for p in cfg.kernel.fragments) or 'no fragments'}",
    )
    if state is not None:
        state.kernel.update(
            source=src.description,
            source_identity=src.identity,
            version=src.version,
            series=str(series.path) if series.path else None,
            series_identity=series.identity,
        )
        state.metadata["inputs"] = _input_identities(cfg, series)
    request = build.BuildRequest(cfg.kernel, src, series, force=force)
    if variant is not None:
        request = dataclasses.replace(
            request, build_dir=variant.build_dir, lenient_kconfig=variant.lenient_kconfig
        )
    watch = MakeBar(phases.progress)
    try:
        result = build.build(request, run_dir / "build.log", watch=watch)
    finally:
        watch.close()
    how = "cached, no make" if result.cached else f"built in {result.seconds.get('make', 0):.1f}s"
    phases.finish("build", t, f"kernel {result.key}: {how}")
    if state is not None:
        state.kernel.update(
            build_key=result.key,
            cached=result.cached,
            head=result.head,
            config_sha256=result.config_sha256,
            toolchain=result.toolchain,
            bzimage=str(result.bzimage),
        )
        state.metadata["build"] = result.to_json()
    return result


class MakeBar:
    """make's steps (kbuild's '  CC  file' lines) on a progress bar, the total being the
    step count of this build directory's fullest earlier make. The bar appears only when
    make starts: a cached kernel, or a wait for another build's lock, shows none."""

    def __init__(self, progress: report.Progress) -> None:
        self.progress = progress
        self.bar: report.Bar | None = None
        self._open = contextlib.ExitStack()

    def start(self, expected_steps: int | None) -> None:
        self.bar = self._open.enter_context(self.progress.bar("build: make", expected_steps))

    def line(self, text: str) -> None:
        if self.bar is not None and build.MAKE_STEP.match(text):
            done = self.bar.done + 1
            if self.bar.total is not None and done > self.bar.total:
                self.bar.set_total(done)  # more steps than last time: a bigger change
            self.bar.advance(1, text.split()[-1][-40:])

    def close(self) -> None:
        self._open.close()


Body = Callable[[runconfig.RunConfig, RunState, report.Phases, machine.Machine], int]


def harness_command() -> str:
    """How to run this harness again: the virtual environment's entry point if there is one
    (a plain `harness` is often not on PATH)."""
    for candidate in (Path(sys.executable).parent / "harness",
                      PROJECT_ROOT / ".venv" / "bin" / "harness"):  # fmt: skip
        if candidate.exists():
            return shlex.quote(str(candidate))
    return "harness"


def execute(cfg: runconfig.RunConfig, results_root: Path, argv: list[str],
            progress: report.Progress | None = None,
            machine_impl: machine.Machine | None = None,
            body: Body | None = None,
            run_args: list[str] | None = None) -> int:  # fmt: skip
    """One run. `run_args` are the options beyond --config that the reproducer repeats."""
    progress = progress or report.Progress()
    phases = report.Phases(progress)
    run_dir = new_run_dir(results_root, cfg.path)
    report.point_latest(results_root, run_dir)
    state = RunState(cfg, run_dir, argv)
    state.metadata.update(
        setup_override=dict(cfg.setup_override),
        run_id=run_dir.name,
        started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=argv,
        reproducer=" ".join(
            [harness_command(), shlex.join(["run", "--config", str(cfg.path), *(run_args or [])])]
        ),
        host={"uname": " ".join(os.uname()), "python": sys.version.split()[0]},
    )
    progress.say(f"run {run_dir}")
    code = EXIT_ERROR
    try:
        code = (body or _execute)(cfg, state, phases, machine_impl or machine.QemuMachine())
    except HarnessError as exc:
        state.error = str(exc)
        progress.say(f"error: {exc}")
    except KeyboardInterrupt:
        state.error = "interrupted"
        progress.say("interrupted: logs and partial results kept")
        code = EXIT_INTERRUPTED
    finally:
        state.metadata["phase_seconds"] = phases.seconds
        state.metadata["wall_seconds"] = round(progress.elapsed(), 3)
        report.write_json(run_dir / "metadata.json", state.metadata)
        results = state.results()
        report.write_json_lines(run_dir / "results.json", results)
        (run_dir / "reproducer.sh").write_text(_reproducer(state))
        _write_formats(run_dir, progress, results, state.metadata)
    progress.say(f"verdict: {state.verdict.upper()}  ->  {run_dir}/results.json")
    progress.say(f"reproduce: {state.metadata['reproducer']}")
    return code


def _write_formats(run_dir: Path, progress: report.Progress, results: dict[str, Any],
                   metadata: dict[str, Any]) -> None:  # fmt: skip
    """results.ktap, junit.xml, kcidb.json and report.html from what results.json holds,
    for every run, interrupted or not. A writer's failure is reported and never costs the
    run its verdict or its exit status."""
    try:
        written = write.write_all(run_dir, cases.from_run(run_dir, results, metadata))
    except Exception as exc:  # a bug in a writer must not hide the run's own outcome
        progress.say(f"formats: not written: {type(exc).__name__}: {exc}")
        return
    progress.say("formats: " + " ".join(p.name for p in written))


def _reproducer(state: RunState) -> str:
    lines = ["#!/bin/sh", "# Re-run this run:", state.metadata["reproducer"]]
    qemu = state.metadata.get("qemu_command")
    if qemu:
        lines += ["# Or boot the same kernel and initramfs by hand:", qemu]
    return "\n".join(lines) + "\n"


def _execute(cfg: runconfig.RunConfig, state: RunState, phases: report.Phases,
             vm: machine.Machine, variant: KernelVariant | None = None) -> int:  # fmt: skip
    run_dir = state.run_dir
    # The model needs neither the kernel nor the guest: it runs in a thread beside the
    # build and the boot (which wait on make and QEMU, not on the GIL), and the comparison
    # waits for it. A scenario it cannot follow is a config problem: when the model has
    # failed by the time the kernel is ready, the run stops before booting it.
    phases.progress.say(f"model: predicting {len(cfg.scenarios)} scenarios beside the build")
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model") as pool:
        future = pool.submit(_predict_all, cfg.scenarios, phases)
        try:
            kernel = prepare_kernel(cfg, run_dir, phases, state, variant=variant)
            if future.done():
                future.result()  # raises the model's error, if any
            return boot_and_compare(cfg, state, phases, vm, kernel.bzimage,
                                    _Predictions(future))  # fmt: skip
        finally:
            future.cancel()


def _predict_all(scenarios: list[workload.Scenario],
                 phases: report.Phases) -> dict[str, model.ModelResult]:  # fmt: skip
    started = time.monotonic()
    predictions = {sc.name: model.predict(sc) for sc in scenarios}
    phases.seconds["model"] = round(time.monotonic() - started, 3)
    return predictions


class _Predictions(Mapping[str, "model.ModelResult"]):
    """The model's predictions, waited for on first use."""

    def __init__(self, future: concurrent.futures.Future[dict[str, model.ModelResult]]) -> None:
        self._future = future

    def _all(self) -> dict[str, model.ModelResult]:
        return self._future.result()

    def __getitem__(self, name: str) -> model.ModelResult:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def boot_and_compare(cfg: runconfig.RunConfig, state: RunState, phases: report.Phases,
                     vm: machine.Machine, bzimage: Path,
                     predictions: Mapping[str, model.ModelResult],
                     between: Callable[[str], initramfs.Job] | None = None) -> int:  # fmt: skip
    """Boot `bzimage` with the config's scenarios and judge each one.

    Campaigns call this with a kernel of their own (a mutant, a gcov build); `between(name)`
    gives a job run after the boot ('boot') and after each scenario (its name), e.g. one
    that brings data back.
    """
    run_dir = state.run_dir
    t = phases.start("guest", f"initramfs with {len(cfg.scenarios)} scenarios")
    jobs = [between("boot")] if between else []
    for sc in cfg.scenarios:
        jobs.append(initramfs.Job(sc.name, script=workload.guest_script(sc)))
        if between:
            jobs.append(between(sc.name))
    image = initramfs.build(run_dir / "initramfs.cpio", GUEST_TESTS, jobs)
    phases.finish("guest", t, f"{image.stat().st_size >> 10} KiB")

    t = phases.start("accel", f"{cfg.machine.accel} requested")
    accel, why = machine.resolve_accel(cfg.machine.accel, bzimage, image, run_dir)
    phases.finish("accel", t, f"{accel} ({why})")

    request = machine.BootRequest(
        kernel=bzimage,
        initramfs=image,
        console_log=run_dir / "console.log",
        data_log=run_dir / "data.log",
        accel=accel,
        memory_mb=cfg.machine.memory_mb,
        cpus=cfg.machine.cpus,
        cmdline=cfg.kernel.cmdline,
        boot_timeout=cfg.machine.boot_timeout,
        job_timeout=cfg.machine.step_timeout,
        jobs=tuple(j.name for j in jobs),
    )
    state.metadata["qemu_command"] = machine.shell_command(machine.qemu_argv(request))
    state.machine.update(
        accel=accel, accel_reason=why, memory_mb=request.memory_mb, cpus_requested=request.cpus
    )
    t = phases.start("boot", f"QEMU ({accel}), console -> {request.console_log}")
    judge = early_judge.EarlyJudge(cfg.scenarios, predictions, request.data_log)
    with phases.progress.bar("boot: scenarios", len(jobs)) as bar:
        booted = vm.boot(request, on_line=_job_progress(phases.progress, bar, judge.scenario_ended))
    console = booted.report
    state.machine.update(
        outcome=booted.outcome,
        timed_out_in=booted.timed_out_in,
        uname=console.uname,
        cpus_seen=console.cpus,
    )
    state.splats = [s.to_json() for s in console.splats]
    for splat in console.splats:
        where = f"while running {splat.job}" if splat.job else "during boot"
        phases.progress.say(f"boot: kernel {splat.kind} {where}, console.log line {splat.line}:")
        head = [line for line in splat.excerpt if line.strip() not in ("Call Trace:", "<TASK>")]
        head = head[: max(1, len(head) - len(splat.call_trace))][:6]
        for line in [*head, "Call Trace:", *splat.call_trace[:8]]:
            print(f"    {line}")
    phases.finish(
        "boot",
        t,
        f"{booted.outcome}" + (f" in {booted.timed_out_in}" if booted.timed_out_in else ""),
    )

    t = phases.start("compare", "guest records against the reference model")
    state.scenarios = judge.final(console, booted)
    (run_dir / "diff.txt").write_text(
        "".join(
            f"== {s['name']}: {s['verdict']}\n{s['diff']}" for s in state.scenarios if s["diff"]
        )
    )
    failed = [s for s in state.scenarios if s["verdict"] not in ("pass", "skipped")]
    skipped = sum(1 for s in state.scenarios if s["verdict"] == "skipped")
    phases.finish(
        "compare",
        t,
        f"{len(state.scenarios) - len(failed) - skipped}/{len(state.scenarios)} passed"
        + (f", {skipped} skipped" if skipped else ""),
    )
    print(report.summary_table(state.scenarios))
    rmap = compare.sum_rmap(state.scenarios)
    if rmap:
        state.rmap_stats = rmap
        phases.progress.say("rmap calls over the run (kernel series' rmap_stats):")
        print(report.rmap_table(rmap))
    if failed:
        phases.progress.say(f"differences explained in {run_dir / 'diff.txt'}")
    if booted.outcome != "done" or any(s["verdict"] == "error" for s in state.scenarios):
        state.verdict = "error"
        state.error = _boot_problem(booted)
        return EXIT_ERROR if not any(s["verdict"] == "fail" for s in state.scenarios) else EXIT_FAIL
    if not failed:
        state.verdict = "pass"
    elif all(s["verdict"] == "environment" for s in failed):
        state.verdict = "environment"  # nothing the model got wrong; see each reason
    else:
        state.verdict = "fail"
    return EXIT_FAIL if failed else EXIT_PASS


def _boot_problem(booted: machine.BootResult) -> str | None:
    fatal = booted.report.fatal
    if fatal is not None:
        where = f"while running {fatal.job}" if fatal.job else "during boot"
        return f"kernel {fatal.kind} {where}: {fatal.headline} (console.log line {fatal.line})"
    if booted.outcome == "timeout":
        return f"guest silent past its deadline in {booted.timed_out_in} (hang?)"
    if booted.outcome == "exited":
        return "QEMU exited before /init finished"
    return None


def _job_progress(progress: report.Progress, bar: report.Bar | None = None,  # type: ignore[no-untyped-def]
                  job_ended: Callable[[], None] | None = None):  # fmt: skip
    """Console hook: one progress line when the guest boots and when each job starts; the
    bar counts the jobs finished, and `job_ended` hears of each."""
    seen: dict[str, float] = {}

    def on_line(line: str) -> None:
        if initramfs.MARK_BOOTED in line and "booted" not in seen:
            seen["booted"] = time.monotonic()
            progress.say("boot: guest up, running jobs")
        elif initramfs.MARK_BEGIN in line:
            name = line.split(initramfs.MARK_BEGIN, 1)[1].strip()
            progress.say(f"boot:   {name}")
        elif initramfs.MARK_END in line:
            if bar is not None:
                bar.advance(1, line.split(initramfs.MARK_END, 1)[1].split()[0])
            if job_ended is not None:
                job_ended()

    return on_line


def execute_repeated(cfg: runconfig.RunConfig, results_root: Path, argv: list[str],
                     times: int, body: Body | None = None,
                     run_args: list[str] | None = None) -> int:  # fmt: skip
    """`times` runs one after the other (the kernel is built once, then cached).

    Status: 130 as soon as one is interrupted, else 2 if any run met an error, else 1 if
    any failed, else 0; a summary line names each run's verdict.
    """
    if times == 1:
        return execute(cfg, results_root, argv, body=body, run_args=run_args)
    codes: list[int] = []
    for i in range(times):
        print(f"== run {i + 1} of {times}", flush=True)
        code = execute(cfg, results_root, argv, body=body, run_args=run_args)
        codes.append(code)
        if code == EXIT_INTERRUPTED:
            return code
    names = {EXIT_PASS: "pass", EXIT_FAIL: "fail", EXIT_ERROR: "error"}
    verdicts = [names.get(c, str(c)) for c in codes]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("pass", "fail", "error")
                       if v in verdicts)  # fmt: skip
    print(f"== {times} runs: {counts} ({' '.join(verdicts)})", flush=True)
    if EXIT_ERROR in codes:
        return EXIT_ERROR
    return EXIT_FAIL if EXIT_FAIL in codes else EXIT_PASS
