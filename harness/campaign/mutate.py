"""Mutation testing of a kernel series: does any scenario notice a one-line slip in it?

Each mutant (mutants.py) is one patch appended to the config's series. It is built
incrementally in a private worktree and build directory (see _make), so make recompiles only
the mutated object and relinks, and booted with the config's scenarios that run its lines
(harness coverage); the scenarios the series itself fails are left out. A mutant is

- killed: a scenario failed (a probe, step or audit differed from the model) or the kernel
  splatted; the report names which;
- timeout: the guest went silent past the (shortened) deadline;
- survived: every scenario passed; on a line coverage saw run, that is a weak check;
- not covered: coverage (harness coverage) shows none of its lines ever runs under these
  scenarios, so it is not booted at all;
- stillborn: it does not build;
- equivalent: its objects are byte for byte those of the series (the compiler proved it
  changes nothing), so it is not booted either.

score = (killed + timeout) / (killed + timeout + survived + not covered).

The campaign is resumable (every mutant's result is a file; --resume skips those done), the
kernel cache gets no mutant kernel and ccache no mutant object (CCACHE_READONLY), and the
shared source tree and its build directory are never touched.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import (
    build,
    cache,
    machine,
    model,
    patches,
    proc,
    report,
    run,
    runconfig,
    source,
    workload,
)
from harness.campaign import coverage, mutants
from harness.campaign import lines as series_lines
from harness.errors import ConfigError, HarnessError, PatchError

DEFAULT_TIMEOUT = 120.0  # seconds a mutant's guest may stay silent in one job
KILLED, SURVIVED, STILLBORN, TIMEOUT, NOT_COVERED, EQUIVALENT = (
    "killed", "survived", "stillborn", "timeout", "not_covered", "equivalent",
)  # fmt: skip
STATUSES = (KILLED, TIMEOUT, SURVIVED, NOT_COVERED, STILLBORN, EQUIVALENT)


@dataclass
class Options:
    patches: str | None = None
    limit: int | None = None
    resume: Path | None = None
    coverage: Path | None = None  # a `harness coverage` run directory
    timeout: float = DEFAULT_TIMEOUT
    run_uncovered: bool = False
    only: tuple[str, ...] = ()  # mutant ids (benchmarks, reruns)
    fuzz_budget: int = 0  # generated workloads (harness fuzz's generator) run on every mutant
    fuzz_seed: int = 1


@dataclass
class Campaign:
    cfg: runconfig.RunConfig
    src: source.SourceTree
    series: patches.Series
    lines: series_lines.SeriesLines
    kernel: build.BuildResult
    out: Path
    progress: report.Progress
    coverage: coverage.LineCoverage | None
    by_scenario: dict[str, set[tuple[str, int]]]  # scenario ('boot') -> lines it ran
    baseline_objects: dict[str, str]
    worktree: Path  # the private checkout mutants are built from
    build_dir: Path  # its build directory
    series_head: str  # the series' last commit (lines.commit_series)
    predictions: dict[str, model.ModelResult]
    options: Options


def _touched_objects(lines: series_lines.SeriesLines) -> list[str]:
    return [f"{d}/{o}" for d, objs in coverage.profiled_objects(lines).items() for o in objs]


def _hash_objects(build_dir: Path, objects: list[str]) -> dict[str, str]:
    hashes = {}
    for obj in objects:
        path = build_dir / obj
        hashes[obj] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"
    return hashes


def _make(camp: Campaign, log: io.TextIOBase | Any, target: str = "bzImage") -> int:
    """make in the private build directory, with the worktree seen at the shared tree's path.

    In a mount namespace of its own, make sees the private worktree bind-mounted over the
    shared tree's path: the compiler's command lines are those of the config's own build,
    so ccache has every object the mutant does not change (a fresh build directory is
    filled from it in minutes), while the shared tree itself is never touched, nor locked
    against the other runs that use it. ccache is only read: no mutant object enters it.
    """
    make = build.make_command(camp.src.tree, camp.build_dir, os.cpu_count() or 1, ())[:-1]
    make.append(target)
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-ec", 'mount --bind "$1" "$2"; shift 2; exec "$@"', "sh",
            str(camp.worktree), str(camp.src.tree), *make]  # fmt: skip
    env = {**build.make_env(), "CCACHE_READONLY": "1"}
    return proc.run(argv, env=env, log=log, check=False).returncode


def _checkout(camp: Campaign, commit: str) -> None:
    series_lines.git_output(camp.worktree, "checkout", "-q", "-f", "--detach", commit)


def _private_tree(
    src: source.SourceTree, head: str, kernel: build.BuildResult
) -> tuple[Path, Path]:
    """The private worktree (at the series' head) and build directory of mutate."""
    worktree = cache.root() / "worktrees" / f"{src.identity}-mutate"
    if not (worktree / ".git").exists():
        shutil.rmtree(worktree, ignore_errors=True)
        worktree.parent.mkdir(parents=True, exist_ok=True)
        series_lines.git_output(src.tree, "worktree", "prune")
        series_lines.git_output(src.tree, "worktree", "add", "-f", "--detach", str(worktree),
                                head)  # fmt: skip
    build_dir = cache.root() / "builds" / f"{kernel.build_dir.name}-mutate"
    build._install_config(build_dir, kernel.config.read_text())
    return worktree, build_dir


def _sync_series(camp: Campaign, log_path: Path) -> float:
    """Put the private worktree and build directory on the series; returns make's seconds."""
    with cache.locked(f"worktree-{camp.worktree.name}", _say_waiting(camp)), \
            log_path.open("a") as log:  # fmt: skip
        _checkout(camp, camp.series_head)
        t0 = time.monotonic()
        if _make(camp, log) != 0:
            raise HarnessError(f"the series itself does not build: see {log_path}")
        seconds = time.monotonic() - t0
        log.write(f"# make: {seconds:.1f}s\n")
        return seconds


def _say_waiting(camp: Campaign):  # type: ignore[no-untyped-def]
    def say(message: str) -> None:
        camp.progress.say(f"build: {message}")

    return say


def latest_coverage(results_root: Path, series: patches.Series) -> Path | None:
    """The newest `harness coverage` run of this very series under results_root."""
    found = []
    for summary in results_root.glob("*/coverage/summary.json"):
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(summary.read_text())
            if data.get("series_identity") == series.identity:
                found.append(summary.parent.parent)
    return max(found, key=lambda p: p.name) if found else None


def prepare(cfg: runconfig.RunConfig, results_root: Path, options: Options,
            progress: report.Progress) -> tuple[Campaign, list[mutants.Mutant]]:  # fmt: skip
    if cfg.kernel.series is None:
        raise ConfigError(f"{cfg.path}: kernel.series is none: there is no series to mutate")
    if cfg.selftests is not None:
        raise ConfigError(f"{cfg.path}: mutate runs workload scenarios; this config has selftests")
    phases = report.Phases(progress)
    if options.resume is not None:
        out = options.resume.resolve()
        if not (out / "campaign.json").exists():
            raise ConfigError(f"--resume {options.resume}: no campaign.json there")
    else:
        out = run.new_run_dir(results_root, Path(f"{cfg.path.stem}-mutate"))
        report.point_latest(results_root, out)
    progress.say(f"mutate {out}")

    if options.fuzz_budget:
        cfg = replace(cfg, scenarios=(*cfg.scenarios, *fuzz_scenarios(options)))
    t = phases.start("model", f"predicting {len(cfg.scenarios)} scenarios")
    predictions = {sc.name: model.predict(sc) for sc in cfg.scenarios}
    phases.finish("model", t, "done")
    kernel = run.prepare_kernel(cfg, out, phases)
    src = source.prepare(cfg.kernel.source, cfg.kernel.ref)
    series = patches.read_series(cfg.kernel.series)
    lines = series_lines.series_lines(src.tree, series)
    try:
        chosen = mutants.select_patches(lines, options.patches)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    all_mutants = list(mutants.mutants_of(lines, chosen))
    if options.only:
        all_mutants = [m for m in all_mutants if m.id in options.only]
    if options.limit is not None:
        all_mutants = all_mutants[: options.limit]

    cov_dir = options.coverage or latest_coverage(results_root, series)
    cov = None
    by_scenario: dict[str, set[tuple[str, int]]] = {}
    if cov_dir is not None:
        lines_json = cov_dir / "coverage" / "lines.json"
        if not lines_json.exists():
            raise ConfigError(f"--coverage {cov_dir}: no coverage/lines.json there")
        cov = coverage.LineCoverage.from_json(json.loads(lines_json.read_text()))
        scenarios_json = cov_dir / "coverage" / "scenarios.json"
        if scenarios_json.exists():
            for tag, keys in json.loads(scenarios_json.read_text()).items():
                by_scenario[tag] = {(k.rpartition(":")[0], int(k.rpartition(":")[2]))
                                    for k in keys}  # fmt: skip
        progress.say(f"coverage: {lines_json}")
    else:
        progress.say("coverage: none for this series (run `harness coverage`): no mutant is "
                     "'not covered', survivors are not told apart")  # fmt: skip

    worktree, build_dir = _private_tree(src, lines.head, kernel)
    camp = Campaign(cfg, src, series, lines, kernel, out, progress, cov, by_scenario, {},
                    worktree, build_dir, lines.head, predictions, options)  # fmt: skip
    state = {"config": str(cfg.path), "series_identity": series.identity,
             "patches": chosen, "mutants": len(all_mutants),
             "coverage": str(cov_dir) if cov_dir else None}  # fmt: skip
    previous = out / "campaign.json"
    if previous.exists():
        old = json.loads(previous.read_text())
        if old.get("series_identity") != series.identity:
            raise ConfigError(
                f"--resume {out}: that campaign mutated another version of the series "
                f"({old.get('series_identity')}, now {series.identity}); start a new one"
            )
    report.write_json(out / "campaign.json", state)

    t = phases.start("baseline", f"the series in {build_dir} (ccache), its objects' hashes")
    make_s = _sync_series(camp, out / "build.log")
    camp.baseline_objects = _hash_objects(build_dir, _touched_objects(lines))
    phases.finish("baseline", t, f"make: {make_s:.1f}s")

    # A scenario the series itself fails (or splats in) cannot tell a mutant from the series.
    t = phases.start("baseline", f"the series' own kernel with all {len(cfg.scenarios)} scenarios")
    failing = baseline_failures(camp)
    if failing:
        camp.cfg = replace(camp.cfg, scenarios=tuple(sc for sc in camp.cfg.scenarios
                                                     if sc.name not in failing))  # fmt: skip
    state["baseline_failures"] = failing
    report.write_json(out / "campaign.json", state)
    phases.finish("baseline", t, f"{len(failing)} scenario(s) fail on the series itself, "
                  f"left out: {', '.join(sorted(failing)) or 'none'}")  # fmt: skip
    return camp, all_mutants


def _object_of(path: str) -> str | None:
    return str(Path(path).with_suffix(".o")) if path.endswith(".c") else None


def fuzz_scenarios(options: Options) -> list[workload.Scenario]:
    """harness fuzz's generated workloads: the same `fuzz_budget` of them for every mutant.

    A workload the model cannot follow is left out (harness fuzz reports those itself).
    """
    from harness.campaign import generate  # the fuzz campaign's generator

    chosen = []
    for index in range(options.fuzz_budget):
        _doc, scenario = generate.generate(options.fuzz_seed, index)
        try:
            model.predict(scenario)
        except HarnessError:
            continue
        chosen.append(scenario)
    return chosen


def baseline_failures(camp: Campaign) -> dict[str, str]:
    """Scenario -> why, for each scenario that does not pass on the unmutated series."""
    bdir = camp.out / "baseline"
    results_json = bdir / "results.json"
    if not results_json.exists():
        bdir.mkdir(parents=True, exist_ok=True)
        state = run.RunState(camp.cfg, bdir, ["harness", "mutate", "(baseline)"])
        phases = report.Phases(report.Progress(io.StringIO()))
        with (bdir / "run.log").open("w") as log, contextlib.redirect_stdout(log):
            try:
                run.boot_and_compare(camp.cfg, state, phases, machine.QemuMachine(),
                                     camp.kernel.bzimage, camp.predictions)  # fmt: skip
            finally:
                report.write_json(results_json, state.results())
    results = json.loads(results_json.read_text())
    failing = {sc["name"]: (sc.get("reason") or sc["verdict"])
               for sc in results.get("scenarios", []) if sc["verdict"] != "pass"}  # fmt: skip
    for splat in results.get("splats") or []:
        if splat.get("job"):
            failing[splat["job"]] = f"kernel {splat['kind']}"
    return failing


def _covered(camp: Campaign, mutant: mutants.Mutant) -> bool | None:
    if camp.coverage is None:
        return None
    states = [
        camp.coverage.state(series_lines.AddedLine(mutant.patch, mutant.hunk, mutant.file, n, ""))
        for n in mutant.lines
    ]
    if "covered" in states:
        return True
    return False if "uncovered" in states else None


def _build_mutant(camp: Campaign, mutant: mutants.Mutant, mdir: Path) -> tuple[str, str]:
    """(status, detail): 'built' with mdir/bzImage, 'stillborn' or 'equivalent'."""
    original = camp.lines.final_text(mutant.file)
    patch_path = mdir / f"{mutant.id}.patch"
    patch_path.write_text(mutant.patch_text(original))
    log_path = mdir / "build.log"
    with cache.locked(f"worktree-{camp.worktree.name}", _say_waiting(camp)), \
            log_path.open("w") as log:  # fmt: skip
        try:
            commit = series_lines.commit_on(camp.src.tree, camp.series_head, patch_path)
        except PatchError as exc:
            return STILLBORN, f"does not apply: {exc}"
        _checkout(camp, commit)
        obj = _object_of(mutant.file)
        if obj is not None:
            # The mutated object first: when the compiler proves it unchanged, no relink.
            if _make(camp, log, obj) != 0:
                return STILLBORN, _first_error(log_path)
            if _hash_objects(camp.build_dir, [obj])[obj] == camp.baseline_objects.get(obj):
                return EQUIVALENT, f"{obj} is unchanged"
        if _make(camp, log) != 0:
            return STILLBORN, _first_error(log_path)
        after = _hash_objects(camp.build_dir, list(camp.baseline_objects))
        if after == camp.baseline_objects:
            return EQUIVALENT, "the series' objects are unchanged"
        shutil.copy2(camp.build_dir / "arch/x86/boot/bzImage", mdir / "bzImage")
    return "built", ""


def _first_error(log_path: Path) -> str:
    for line in log_path.read_text(errors="replace").splitlines():
        if "error:" in line:
            return line.strip()[:300]
    return f"make failed; see {log_path}"


def scenarios_for(camp: Campaign, mutant: mutants.Mutant) -> tuple[workload.Scenario, ...]:
    """The scenarios that run any of the mutant's lines (all of them without that data).

    A line the boot itself runs can change what any scenario sees: all of them then.
    """
    every = camp.cfg.scenarios
    if not camp.by_scenario or camp.options.run_uncovered:
        return every
    lines = {(mutant.file, n) for n in mutant.lines}
    if lines & camp.by_scenario.get("boot", set()):
        return every
    # Generated workloads (--fuzz-budget) have no coverage of their own: always run.
    chosen = tuple(sc for sc in every if sc.name not in camp.by_scenario or
                   lines & camp.by_scenario[sc.name])  # fmt: skip
    return chosen or every


def _boot_mutant(camp: Campaign, mutant: mutants.Mutant, mdir: Path) -> tuple[str, str]:
    cfg = replace(
        camp.cfg,
        scenarios=scenarios_for(camp, mutant),
        machine=replace(
            camp.cfg.machine,
            step_timeout=min(camp.cfg.machine.step_timeout, camp.options.timeout),
            boot_timeout=min(camp.cfg.machine.boot_timeout, camp.options.timeout),
        ),
    )
    state = run.RunState(cfg, mdir, ["harness", "mutate", mutant.id])
    phases = report.Phases(report.Progress(io.StringIO()))
    with (mdir / "run.log").open("w") as log, contextlib.redirect_stdout(log):
        try:
            run.boot_and_compare(
                cfg, state, phases, machine.QemuMachine(), mdir / "bzImage", camp.predictions
            )
        finally:
            report.write_json(mdir / "results.json", state.results())
    return classify(state.results())


def classify(results: dict[str, Any]) -> tuple[str, str]:
    """(status, what killed it) from a run's results.json."""
    splats = results.get("splats") or []
    if splats:
        first = splats[0]
        where = f" in {first['job']}" if first.get("job") else " at boot"
        return KILLED, f"splat{where}: {first['kind']}: {_splat_line(first)}"
    machine_state = results.get("machine") or {}
    for sc in results.get("scenarios") or []:
        if sc.get("verdict") == "fail":
            first = (sc.get("diff") or sc.get("reason") or "").strip().splitlines()
            return KILLED, f"scenario {sc['name']}: {first[0][:200] if first else 'failed'}"
    if machine_state.get("outcome") == "timeout":
        return TIMEOUT, f"guest silent in {machine_state.get('timed_out_in')}"
    for sc in results.get("scenarios") or []:
        if sc.get("verdict") != "pass":
            return KILLED, f"scenario {sc['name']}: {sc.get('reason') or sc.get('verdict')}"
    if machine_state.get("outcome") not in (None, "done"):
        return KILLED, f"guest {machine_state.get('outcome')}"
    return SURVIVED, ""


def build_one(camp: Campaign, mutant: mutants.Mutant) -> dict[str, Any]:
    """Everything before the boot: the result when none is needed, else 'status': 'built'."""
    mdir = camp.out / "mutants" / mutant.id
    done = mdir / "result.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    mdir.mkdir(parents=True, exist_ok=True)
    covered = _covered(camp, mutant)
    result: dict[str, Any] = {**mutant.to_json(), "covered": covered}
    t0 = time.monotonic()
    obj = _object_of(mutant.file)
    if obj is not None and camp.baseline_objects.get(obj) == "-":
        status, detail = NOT_COVERED, f"not compiled in this config (no {obj})"
    elif covered is False and not camp.options.run_uncovered:
        status, detail = NOT_COVERED, "coverage: none of its lines runs under these scenarios"
    else:
        status, detail = _build_mutant(camp, mutant, mdir)
        result["build_seconds"] = round(time.monotonic() - t0, 1)
    result.update(status=status, detail=detail, seconds=round(time.monotonic() - t0, 1))
    if status != "built":
        report.write_json(done, result)
    return result


def boot_one(camp: Campaign, mutant: mutants.Mutant, result: dict[str, Any]) -> dict[str, Any]:
    """Boot a built mutant with its scenarios and record what became of it."""
    mdir = camp.out / "mutants" / mutant.id
    t1 = time.monotonic()
    result["scenarios"] = len(scenarios_for(camp, mutant))
    status, detail = _boot_mutant(camp, mutant, mdir)
    result["boot_seconds"] = round(time.monotonic() - t1, 1)
    (mdir / "bzImage").unlink(missing_ok=True)
    (mdir / "initramfs.cpio").unlink(missing_ok=True)
    result.update(status=status, detail=detail,
                  seconds=round(result["build_seconds"] + result["boot_seconds"], 1))  # fmt: skip
    if status == SURVIVED and result.get("covered"):
        result["weak_check"] = True
    report.write_json(mdir / "result.json", result)
    return result


def _splat_line(splat: dict[str, Any]) -> str:
    """The line that says what and where: the message and WARNING line, not '[ cut here ]'."""
    excerpt = [str(x).strip() for x in splat.get("excerpt") or []]
    useful = [x for x in excerpt[:4] if x and "cut here" not in x and not x.startswith("CPU:")]
    return " | ".join(useful[:2]) or str(splat.get("headline"))


def run_one(camp: Campaign, mutant: mutants.Mutant) -> dict[str, Any]:
    result = build_one(camp, mutant)
    return boot_one(camp, mutant, result) if result["status"] == "built" else result


def run_all(camp: Campaign, todo: list[mutants.Mutant],
            done: Callable[[int, mutants.Mutant, dict[str, Any]], None]) -> None:  # fmt: skip
    """Every mutant, the next one building while the last one boots.

    The build needs the shared tree and make, the boot only the mutant's own copy of its
    bzImage: overlapping them makes a mutant cost about the longer of the two, not the sum.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="boot") as boots:
        pending: tuple[int, mutants.Mutant, concurrent.futures.Future[dict[str, Any]]] | None
        pending = None
        try:
            for n, mutant in enumerate(todo, start=1):
                result = build_one(camp, mutant)
                if pending is not None:
                    done(pending[0], pending[1], pending[2].result())
                    pending = None
                if result["status"] == "built":
                    pending = (n, mutant, boots.submit(boot_one, camp, mutant, result))
                else:
                    done(n, mutant, result)
            if pending is not None:
                done(pending[0], pending[1], pending[2].result())
        except BaseException:
            if pending is not None:
                pending[2].cancel()
            raise


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(r["status"] for r in results)
    detected = counts[KILLED] + counts[TIMEOUT]
    scored = detected + counts[SURVIVED] + counts[NOT_COVERED]
    timed = [r["seconds"] for r in results if "boot_seconds" in r]
    return {
        "mutants": len(results),
        "killed": counts[KILLED],
        "timeout": counts[TIMEOUT],
        "survived": counts[SURVIVED],
        "stillborn": counts[STILLBORN],
        "equivalent": counts[EQUIVALENT],
        "not_covered": counts[NOT_COVERED],
        "weak_checks": sum(1 for r in results if r.get("weak_check")),
        "score": round(detected / scored, 4) if scored else None,
        "median_seconds_per_booted_mutant": (sorted(timed)[len(timed) // 2] if timed else None),
    }


def hunk_report(results: list[dict[str, Any]], lines: series_lines.SeriesLines) -> str:
    """Per patch and hunk: the mutants' fates, then every one not killed with its reason."""
    rows: dict[tuple[str, int], Counter[str]] = {}
    for r in results:
        rows.setdefault((r["patch"], r["hunk"]), Counter())[r["status"]] += 1
    out = ["patch  hunk  killed timeout survived not-cov stillborn equiv  function"]
    for (patch, hunk), c in rows.items():
        out.append(
            f"{patch[:4]}  {hunk:>5}  {c[KILLED]:>6} {c[TIMEOUT]:>7} {c[SURVIVED]:>8} "
            f"{c[NOT_COVERED]:>7} {c[STILLBORN]:>9} {c[EQUIVALENT]:>5}  "
            f"{lines.hunk(patch, hunk).header[:40]}"
        )
    out.append("")
    for label, status in (("survived (weak checks when covered)", SURVIVED),
                          ("not covered", NOT_COVERED), ("stillborn", STILLBORN),
                          ("equivalent (identical objects)", EQUIVALENT)):  # fmt: skip
        chosen = [r for r in results if r["status"] == status]
        if chosen:
            out.append(f"{label}:")
            for r in chosen:
                weak = " [weak check]" if r.get("weak_check") else ""
                out.append(f"  {r['id']}{weak}: {describe(r)}")
    killed = [r for r in results if r["status"] in (KILLED, TIMEOUT)]
    if killed:
        out.append("killed:")
        out += [f"  {r['id']}: {r['detail']}" for r in killed]
    return "\n".join(out) + "\n"


def describe(r: dict[str, Any]) -> str:
    old = " ".join(str(r["before"]).split())
    new = " ".join(str(r["after"]).split()) or "(deleted)"
    return f"{r['file']}:{r['line']} `{old[:80]}` -> `{new[:80]}`"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def campaign(cfg: runconfig.RunConfig, results_root: Path, options: Options) -> int:
    # A campaign runs for hours, often in the background (where a shell ignores SIGINT):
    # SIGINT and SIGTERM both stop it cleanly, keeping what is done for --resume.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    progress = report.Progress()
    camp, todo = prepare(cfg, results_root, options, progress)
    results: list[dict[str, Any]] = []
    code = run.EXIT_ERROR
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    try:

        def done(n: int, mutant: mutants.Mutant, result: dict[str, Any]) -> None:
            results.append(result)
            progress.say(
                f"[{n}/{len(todo)}] {mutant.id}: {result['status'].upper()}"
                + (f" ({result['detail']})" if result["detail"] else "")
                + f" {result.get('seconds', 0):.0f}s"
            )

        run_all(camp, todo, done)
        code = run.EXIT_FAIL if any(r["status"] in (SURVIVED, NOT_COVERED) for r in results) \
            else run.EXIT_PASS  # fmt: skip
    except KeyboardInterrupt:
        progress.say(f"interrupted: resume with --resume {camp.out}")
        code = run.EXIT_INTERRUPTED
    finally:
        summary = {**summarise(results), "complete": len(results) == len(todo),
                   "started": started, "config": str(cfg.path),
                   "series_identity": camp.series.identity}  # fmt: skip
        report.write_json(camp.out / "summary.json", summary)
        (camp.out / "report.txt").write_text(hunk_report(results, camp.lines))
        progress.say("putting the private worktree and build directory back on the series")
        try:
            _sync_series(camp, camp.out / "build.log")
        except (HarnessError, KeyboardInterrupt) as exc:
            progress.say(f"could not restore the build directory: {exc}")
    print(hunk_report(results, camp.lines).split("\n\n", 1)[0])
    print(json.dumps(summary, indent=1))
    progress.say(f"report: {camp.out / 'report.txt'}")
    return code


def main(argv_config: Path, results_root: Path, options: Options) -> int:
    cfg = runconfig.load(argv_config)
    try:
        return campaign(cfg, results_root, options)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return run.EXIT_ERROR
