"""Command line: harness run | build | boot | bisect | cache | doctor | model | report | diff |
nightly | fuzz | coverage | mutate."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness import doctor, initramfs, machine, report, run, runconfig, selftest_run
from harness.errors import HarnessError


def _results_root(args: argparse.Namespace) -> Path:
    return Path(args.results).resolve()


def cmd_run(args: argparse.Namespace) -> int:
    cfg = runconfig.select(runconfig.load(Path(args.config)), args.scenario, args.exclude)
    body = selftest_run.body if cfg.selftests is not None else None
    selection = [*(a for g in args.scenario for a in ("--scenario", g)),
                 *(a for g in args.exclude for a in ("--exclude", g))]  # fmt: skip
    return run.execute_repeated(cfg, _results_root(args), ["harness", *sys.argv[1:]],
                                args.repeat, body=body, run_args=selection)  # fmt: skip


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def cmd_build(args: argparse.Namespace) -> int:
    cfg = runconfig.load(Path(args.config))
    progress = report.Progress()
    phases = report.Phases(progress)
    work = _results_root(args) / "builds"
    work.mkdir(parents=True, exist_ok=True)
    result = run.prepare_kernel(cfg, work, phases, force=args.force)
    print(result.bzimage)
    return 0


def cmd_boot(args: argparse.Namespace) -> int:
    """Boot the config's kernel with one command (or an interactive shell) in the guest."""
    cfg = runconfig.load(Path(args.config))
    progress = report.Progress()
    phases = report.Phases(progress)
    run_dir = run.new_run_dir(_results_root(args), cfg.path)
    kernel = run.prepare_kernel(cfg, run_dir, phases)
    command = " ".join(args.command).strip()
    interactive = not command
    jobs = [] if interactive else [initramfs.Job("command", command=command)]
    image = initramfs.build(run_dir / "initramfs.cpio", run.GUEST_TESTS, jobs,
                            interactive=interactive)  # fmt: skip
    accel, why = machine.resolve_accel(cfg.machine.accel, kernel.bzimage, image, run_dir)
    progress.say(f"accel: {accel} ({why})")
    request = machine.BootRequest(
        kernel=kernel.bzimage, initramfs=image, console_log=run_dir / "console.log",
        data_log=None, accel=accel, memory_mb=cfg.machine.memory_mb, cpus=cfg.machine.cpus,
        cmdline=cfg.kernel.cmdline, boot_timeout=cfg.machine.boot_timeout,
        job_timeout=cfg.machine.step_timeout, jobs=tuple(j.name for j in jobs),
    )  # fmt: skip
    if interactive:
        argv = machine.qemu_argv(request)
        argv[argv.index("stdio")] = "mon:stdio"
        progress.say("interactive console; quit with Ctrl-A x")
        os.execvp(argv[0], argv)
    result = machine.QemuMachine().boot(request, on_line=lambda line: print(line, flush=True))
    progress.say(f"guest {result.outcome}; console log {request.console_log}")
    fatal = result.report.fatal
    if fatal is not None:
        print(f"kernel {fatal.kind}: {fatal.headline}", file=sys.stderr)
    status = result.report.finished.get("command")
    if result.outcome != "done" or status is None:
        return run.EXIT_ERROR
    return 0 if status == 0 else run.EXIT_FAIL


def cmd_coverage(args: argparse.Namespace) -> int:
    from harness.campaign import coverage

    cfg = runconfig.load(Path(args.config))
    return run.execute(cfg, _results_root(args), ["harness", *sys.argv[1:]], body=coverage.collect)


def cmd_mutate(args: argparse.Namespace) -> int:
    from harness.campaign import mutate

    options = mutate.Options(
        patches=args.patches, limit=args.limit,
        resume=Path(args.resume) if args.resume else None,
        coverage=Path(args.coverage) if args.coverage else None,
        timeout=args.timeout, run_uncovered=args.run_uncovered, only=tuple(args.mutant or ()),
        fuzz_budget=args.fuzz_budget,
    )  # fmt: skip
    return mutate.campaign(runconfig.load(Path(args.config)), _results_root(args), options)


def cmd_bisect(args: argparse.Namespace) -> int:
    from harness import bisect

    cfg = runconfig.select(runconfig.load(Path(args.config)), args.scenario, args.exclude)
    return bisect.bisect(cfg, _results_root(args), ["harness", *sys.argv[1:]], good=args.good)


def cmd_cache(args: argparse.Namespace) -> int:
    from harness import prune

    if args.action == "list":
        return prune.list_command()
    return prune.prune_command(args.keep, args.max_size)


def cmd_doctor(args: argparse.Namespace) -> int:
    return doctor.main()


def cmd_model(args: argparse.Namespace) -> int:
    from harness import model, workload

    results = [model.predict(sc) for sc in workload.load_workload(Path(args.workload))]
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print("\n".join(model.format_table(r) for r in results))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness import report_command

    return report_command.main(args.run, _results_root(args), args.html, args.kcidb)


def cmd_diff(args: argparse.Namespace) -> int:
    from harness import report_command, run_diff

    root = _results_root(args)
    return run_diff.main(report_command.resolve(args.run_a, root),
                         report_command.resolve(args.run_b, root))  # fmt: skip
def cmd_nightly(args: argparse.Namespace) -> int:
    from harness.campaign import matrix, nightly

    grid = matrix.load(Path(args.matrix))
    if args.emit:
        print(nightly.emit(grid, args.emit))
        return 0
    if args.cell:
        out = Path(args.out) if args.out else _results_root(args) / "nightly-cells" / args.cell
        return nightly.run_cell(grid, args.cell, out.resolve(), args.retries, args.budget)
    if args.merge:
        return nightly.merge(grid, [Path(d) for d in args.merge], _results_root(args), args.night)
    hosts = Path(args.hosts) if args.hosts else None
    return nightly.run_night(grid, _results_root(args), hosts, args.jobs, args.retries,
                             args.budget, args.night)  # fmt: skip


def cmd_fuzz(args: argparse.Namespace) -> int:
    from harness.campaign import fuzz

    cfg = runconfig.load(Path(args.config))
    options = fuzz.FuzzOptions(
        seed=args.seed, count=args.count, batch=args.batch, shrink=not args.no_shrink,
        seconds=fuzz.parse_duration(args.time) if args.time else None,
        job_timeout=args.job_timeout, first=args.first,
    )  # fmt: skip
    if options.count is None and options.seconds is None:
        options.count = 1000
    fuzz.stop_on_sigterm()
    return run.execute(cfg, _results_root(args), ["harness", *sys.argv[1:]],
                       body=fuzz.fuzz_body(options))  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description=__doc__)
    p.add_argument("--results", default="results", help="results directory (default: ./results)")
    sub = p.add_subparsers(dest="command_name", required=True)

    r = sub.add_parser("run", help="build, boot, run the scenarios and compare with the model")
    r.add_argument("--config", required=True, help="run config YAML, e.g. configs/thp.yaml")
    r.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only the scenarios (or selftests) matching GLOB; repeatable",
    )
    r.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip the scenarios (or selftests) matching GLOB; repeatable",
    )
    r.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        metavar="N",
        help="run N times (one build, N boots); exit 1 if any run failed",
    )
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("build", help="build (or fetch from the cache) the config's kernel")
    b.add_argument("--config", required=True)
    b.add_argument("--force", action="store_true", help="run make even if the kernel is cached")
    b.set_defaults(func=cmd_build)

    bo = sub.add_parser("boot", help="boot the kernel: run CMD in the guest, or a shell")
    bo.add_argument("--config", required=True)
    bo.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD to run in the guest")
    bo.set_defaults(func=cmd_boot)

    c = sub.add_parser(
        "coverage", help="which of the series' added lines the scenarios run (gcov, gcovr)"
    )
    c.add_argument("--config", required=True, help="run config with a kernel series")
    c.set_defaults(func=cmd_coverage)

    mu = sub.add_parser(
        "mutate", help="mutation testing: which one-line slips in the series the scenarios catch"
    )
    mu.add_argument("--config", required=True, help="run config with a kernel series")
    mu.add_argument("--patches", help="patches to mutate, e.g. 0007-0012 (default: all)")
    mu.add_argument("--limit", type=int, help="stop after the first N mutants")
    mu.add_argument("--resume", help="a mutate run directory to continue")
    mu.add_argument("--coverage", help="a `harness coverage` run directory (default: newest)")
    mu.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds a mutant's guest may stay silent in one job (default 120)",
    )
    mu.add_argument(
        "--run-uncovered",
        action="store_true",
        help="boot mutants on lines coverage never saw run, too",
    )
    mu.add_argument("--mutant", action="append", help="only this mutant id (repeatable)")
    mu.add_argument("--fuzz-budget", type=int, default=0, metavar="N",
                    help="also run N workloads of harness fuzz's generator (seed 1) per mutant")
    mu.set_defaults(func=cmd_mutate)

    bi = sub.add_parser("bisect", help="the first patch of the series at which a scenario fails")
    bi.add_argument("--config", required=True, help="run config whose kernel.series to bisect")
    bi.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="GLOB",
        help="judge only the scenarios matching GLOB; repeatable",
    )
    bi.add_argument("--exclude", action="append", default=[], metavar="GLOB")
    bi.add_argument(
        "--good",
        type=int,
        default=0,
        metavar="N",
        help="a prefix of N patches known to pass (default 0: the base kernel)",
    )
    bi.set_defaults(func=cmd_bisect)

    c = sub.add_parser("cache", help="list the kernel cache, or evict least recently used")
    c.add_argument("action", choices=("list", "prune"))
    c.add_argument(
        "--keep",
        type=_positive,
        metavar="N",
        help="prune: keep the N most recently used kernels, build directories "
        "and selftest builds (each)",
    )
    c.add_argument(
        "--max-size",
        metavar="SIZE",
        help="prune: evict least recently used until the rest fits, e.g. 4G "
        "(default: the automatic cap, FOLIO_HARNESS_CACHE_MAX, 8G)",
    )
    c.set_defaults(func=cmd_cache)

    d = sub.add_parser("doctor", help="check the host tools a run needs")
    d.set_defaults(func=cmd_doctor)

    m = sub.add_parser("model", help="print the reference model's predictions, no kernel")
    m.add_argument("--workload", required=True)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_model)

    rp = sub.add_parser("report", help="a run's results as KTAP, JUnit, KCIDB and HTML")
    rp.add_argument("run", help="results directory, run id under --results, or 'latest'")
    how = rp.add_mutually_exclusive_group()
    how.add_argument("--html", action="store_true", help="write report.html, print its path")
    how.add_argument("--kcidb", action="store_true", help="print KCIDB v5 JSON for submission")
    rp.set_defaults(func=cmd_report)

    df = sub.add_parser("diff", help="what changed between two runs (verdicts, folio values)")
    df.add_argument("run_a")
    df.add_argument("run_b")
    df.set_defaults(func=cmd_diff)
    n = sub.add_parser("nightly", help="run the nightly matrix here, over SSH, or as CI jobs")
    n.add_argument("--matrix", default=str(Path(__file__).resolve().parent.parent / "configs"
                                           / "nightly.yaml"), help="default: configs/nightly.yaml")
    n.add_argument("--hosts", help="hosts YAML: run the cells over SSH on these hosts")
    n.add_argument("--jobs", type=int, default=1, help="cells at a time here (bounded by cores)")
    n.add_argument("--retries", type=int, help="re-run a failing cell up to K times")
    n.add_argument("--budget", help="time budget of every fuzz/mutate cell, e.g. 5m")
    n.add_argument("--night", help="name of the night directory (default: today's date)")
    n.add_argument("--out", help="with --cell: the cell's directory")
    mode = n.add_mutually_exclusive_group()
    mode.add_argument("--emit", choices=("github-matrix", "gitlab"), help="print the cells for CI")
    mode.add_argument("--cell", help="run one cell (a CI job, or a host's share)")
    mode.add_argument("--merge", nargs="+", metavar="DIR", help="merge cell directories")
    n.set_defaults(func=cmd_nightly)
    fz = sub.add_parser("fuzz", help="generated workloads against the model, shrunk findings")
    fz.add_argument("--config", required=True, help="run config: its kernel and machine")
    fz.add_argument("--seed", type=int, default=1, help="same seed, same workloads (default 1)")
    how = fz.add_mutually_exclusive_group()
    how.add_argument("--count", type=int, help="workloads to run (default 1000)")
    how.add_argument("--time", help="run for this long: 90s, 10m, 1h")
    fz.add_argument("--batch", type=int, default=200, help="workloads per boot (default 200)")
    fz.add_argument("--first", type=int, default=0, help="index of the first workload")
    fz.add_argument(
        "--job-timeout",
        type=float,
        default=60.0,
        help="seconds one workload may take before it counts as a hang",
    )
    fz.add_argument("--no-shrink", action="store_true", help="save findings unshrunk")
    fz.set_defaults(func=cmd_fuzz)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return run.EXIT_ERROR
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return run.EXIT_INTERRUPTED
    except BrokenPipeError:  # `harness model ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
