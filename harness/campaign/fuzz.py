"""harness fuzz: generated workloads, many per boot, judged as `harness run` judges them.

A campaign generates workloads (generate.py) in batches, predicts each with the reference
model, runs the batch in one guest of the config's kernel (one initramfs job per workload)
and judges every workload with compare.judge, the same judge as `harness run`. A panic or a
hang ends a boot: the workload that was running is recorded as the culprit and the rest of
the batch runs in a new boot. Whatever fails in a new way (a new signature) is shrunk
(shrink.py) and saved as results/<run>/fuzz/found/<signature>.yaml, a run config holding the
campaign's kernel and the shrunk scenario, which `harness run --config` accepts as it is;
a repeat of a known signature is only counted. Environmental deviations (a THP allocation
fell back, ...) are counted apart and never reported as findings.
"""

from __future__ import annotations

import concurrent.futures
import re
import resource
import signal
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import compare, initramfs, machine, model, records, report, run, runconfig, workload
from harness.campaign import generate, shrink
from harness.console import ConsoleReport, Splat
from harness.errors import GuestError, HarnessError
from harness.formats.workload_yaml import Doc, dump_docs
from harness.model import ModelResult

DEFAULT_BATCH = 200
GUEST = initramfs.GuestSettings(compress_records=True)
DEFAULT_JOB_TIMEOUT = 60.0  # seconds: a generated workload needs well under one
FOUND = ("mismatch", "crash", "hang", "splat", "error", "model-error")

# Checks in the order a signature names them: the first one a finding shows is its name.
CHECKS = (
    ("audit", "rmap audit: mismatch"),
    ("W_audit", "W (rmap audit):"),
    ("W", "W:"),
    ("T", "T:"),
    ("E", "E:"),
    ("P", "P of pages"),
    ("V", "V:"),
    ("order", "order:"),
    ("identity", "guest folios"),
    ("identity", "of its guest folio"),
    ("identity", "in an earlier probe"),
    ("presence", "not present"),
    ("presence", "present in the guest where"),
    ("rss", "rss_kb"),
    ("anon_huge", "anon_huge_kb"),
    ("shmem_pmd", "shmem_pmd_kb"),
    ("vma", "expected; the guest has"),
)


@dataclass
class Outcome:
    """What became of one workload."""

    name: str
    doc: Doc
    scenario: workload.Scenario | None
    status: str  # pass | environment | skipped | one of FOUND
    signature: str | None = None
    reason: str = ""
    diff: str = ""
    boot: int | None = None  # which boot of the runner ran it
    parts: list[str] = field(default_factory=list)  # a mismatch: every check that differs


@dataclass
class Timing:
    """Where a campaign's time goes, in seconds."""

    generate: float = 0.0
    model: float = 0.0
    initramfs: float = 0.0
    boot: float = 0.0  # QEMU start to the first job
    jobs: float = 0.0  # first job to the last job's end, in the guest's own clock
    shutdown: float = 0.0
    judge: float = 0.0
    shrink: float = 0.0
    qemu_cpu: float = 0.0  # CPU seconds QEMU used (user + system), all boots
    job_seconds: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        jobs = sorted(self.job_seconds)
        median = jobs[len(jobs) // 2] if jobs else None
        return {
            "generate": round(self.generate, 2),
            "model": round(self.model, 2),
            "initramfs": round(self.initramfs, 2),
            "boot": round(self.boot, 2),
            "jobs": round(self.jobs, 2),
            "shutdown": round(self.shutdown, 2),
            "judge": round(self.judge, 2),
            "shrink": round(self.shrink, 2),
            "qemu_cpu": round(self.qemu_cpu, 2),
            "host_cpu": round(_self_cpu(), 2),
            "job_median": round(median, 4) if median is not None else None,
        }


# --- the guest runner --------------------------------------------------------------------------


# A workload parsed and predicted: the model's result, or the error the model raised.
Prepared = tuple[Doc, workload.Scenario, "ModelResult | HarnessError"]


class GuestRunner:
    """Runs workloads in guests of one kernel, many per boot, booting again after a crash."""

    def __init__(
        self,
        kernel: Path,
        cfg: runconfig.RunConfig,
        accel: str,
        work: Path,
        vm: machine.Machine,
        job_timeout: float,
        say: Callable[[str], None],
    ) -> None:
        self.kernel = kernel
        self.cfg = cfg
        self.accel = accel
        self.work = work
        self.vm = vm
        self.job_timeout = job_timeout
        self.say = say
        self.boots = 0
        self.timing = Timing()
        self.qemu_command: str | None = None
        work.mkdir(parents=True, exist_ok=True)

    def prepare(self, docs: list[Doc]) -> list[Prepared]:
        """Parse and predict each workload (no guest): what run_prepared needs."""
        prepared: list[Prepared] = []
        for doc in docs:
            t = time.monotonic()
            scenario = generate.validate(doc)
            self.timing.generate += time.monotonic() - t
            t = time.monotonic()
            try:
                prepared.append((doc, scenario, model.predict(scenario)))
            except HarnessError as exc:
                prepared.append((doc, scenario, exc))
            finally:
                self.timing.model += time.monotonic() - t
        return prepared

    def run(self, docs: list[Doc], keep_logs: bool = False) -> list[Outcome]:
        """Outcomes in the order of docs; names must be unique among them."""
        return self.run_prepared(self.prepare(docs), keep_logs)

    def run_prepared(self, prepared: list[Prepared], keep_logs: bool = False) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        pending: list[tuple[Doc, workload.Scenario, ModelResult]] = []
        for doc, scenario, prediction in prepared:
            if isinstance(prediction, HarnessError):
                outcomes[doc["name"]] = Outcome(
                    doc["name"], doc, scenario, "model-error",
                    f"model-error-{_words(str(prediction).split('the model failed:')[-1])}",
                    str(prediction),
                )  # fmt: skip
            else:
                pending.append((doc, scenario, prediction))
        while pending:
            done = self._boot(pending, keep_logs)
            if not done:
                raise GuestError(
                    f"boot {self.boots} ran none of its {len(pending)} workloads; "
                    f"see {self.work}/console-{self.boots}.log"
                )
            for outcome in done:
                outcomes[outcome.name] = outcome
            pending = [p for p in pending if p[0]["name"] not in outcomes]
        return [outcomes[doc["name"]] for doc, _, _ in prepared]

    def _boot(
        self, batch: list[tuple[Doc, workload.Scenario, ModelResult]], keep_logs: bool
    ) -> list[Outcome]:
        self.boots += 1
        n = self.boots
        t = time.monotonic()
        jobs = [initramfs.Job(sc.name, script=workload.guest_script(sc)) for _, sc, _ in batch]
        image = initramfs.build(self.work / f"boot-{n}.cpio", run.GUEST_TESTS, jobs, GUEST)
        self.timing.initramfs += time.monotonic() - t
        request = machine.BootRequest(
            kernel=self.kernel,
            initramfs=image,
            console_log=self.work / f"console-{n}.log",
            data_log=self.work / f"data-{n}.log",
            accel=self.accel,
            memory_mb=self.cfg.machine.memory_mb,
            cpus=self.cfg.machine.cpus,
            cmdline=self.cfg.kernel.cmdline,
            boot_timeout=self.cfg.machine.boot_timeout,
            job_timeout=self.job_timeout,
            jobs=tuple(j.name for j in jobs),
        )
        self.qemu_command = machine.shell_command(machine.qemu_argv(request))
        booted = self.boot_and_time(request)
        t = time.monotonic()
        console = booted.report
        parsed = records.parse_records(read_compressed(request.data_log))
        by_name = {r.name: r for r in parsed.scenarios}
        culprit = booted.timed_out_in
        if console.fatal is not None and console.fatal.job is not None:
            culprit = console.fatal.job
        done: list[Outcome] = []
        for doc, scenario, prediction in batch:
            recs = by_name.get(scenario.name)
            complete = recs is not None and recs.complete
            if scenario.name != culprit and not complete and booted.outcome != "done":
                # Not reached before the guest died, or its records were still in the
                # UART when it did (they go out after the workload ends): next boot.
                continue
            verdict = compare.judge(scenario, recs, console, booted, prediction)
            outcome = _classify(doc, scenario, verdict, console, booted)
            outcome.boot = n
            done.append(outcome)
        self.timing.judge += time.monotonic() - t
        if not keep_logs and all(o.status in ("pass", "environment", "skipped") for o in done):
            for path in (image, request.console_log, request.data_log):
                path.unlink(missing_ok=True)
        else:
            image.unlink(missing_ok=True)
        return done

    def boot_and_time(self, request: machine.BootRequest) -> machine.BootResult:
        """Boot, noting on the host's clock when the first job began and when all ended."""
        marks: dict[str, float] = {}

        def on_line(line: str) -> None:
            if initramfs.MARK_BEGIN in line:
                marks.setdefault("first_job", time.monotonic())
            elif initramfs.MARK_DONE in line:
                marks["done"] = time.monotonic()

        started = time.monotonic()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        booted = self.vm.boot(request, on_line=on_line)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # QEMU's own CPU time (a reaped child): what the guest cost, whatever else ran.
        self.timing.qemu_cpu += (after.ru_utime + after.ru_stime) - (
            children.ru_utime + children.ru_stime
        )
        self._account(request.console_log, started, marks, time.monotonic())
        return booted

    def _account(self, console_log: Path, started: float, marks: dict[str, float],
                 ended: float) -> None:  # fmt: skip
        """Split a boot's wall time by the host's clock at the console's markers, and time
        each job by the guest's own printk timestamps."""
        first_job = marks.get("first_job", ended)
        done = marks.get("done", ended)
        self.timing.boot += first_job - started  # QEMU, firmware, kernel, /init
        self.timing.jobs += max(0.0, done - first_job)
        self.timing.shutdown += max(0.0, ended - done)  # drain the data channel, reset
        begins: dict[str, float] = {}
        for line in _read_lines(console_log):
            stamp = re.match(r"^\[\s*(\d+\.\d+)\]", line)
            if stamp is None:
                continue
            words = line.split()
            if initramfs.MARK_BEGIN in words and words[-1] != initramfs.MARK_BEGIN:
                begins[words[-1]] = float(stamp.group(1))
            elif initramfs.MARK_END in words:
                name = words[words.index(initramfs.MARK_END) + 1]
                if name in begins:
                    self.timing.job_seconds.append(float(stamp.group(1)) - begins[name])


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_compressed(path: Path) -> list[str]:
    """The records of a data log of gzip members, one per workload (GUEST's channel).

    A member cut short (the guest died while sending it) gives what it holds so far.
    """
    data = path.read_bytes() if path.exists() else b""
    out = bytearray()
    while data:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += member.decompress(data)
        except zlib.error:
            break
        if not member.eof:
            break
        data = member.unused_data
    return out.decode(errors="replace").splitlines()


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return path.read_bytes().decode(errors="replace").splitlines()


def _words(text: str, limit: int = 4) -> str:
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)[:limit]
    return "-".join(words).lower() or "unknown"


# Frames every splat's trace starts with: they say how it was reported, not where.
_REPORTING_FRAMES = frozenset({
    "dump_stack_lvl", "dump_stack", "dump_page", "bad_page", "__warn", "warn_slowpath_fmt",
    "report_bug", "handle_bug", "exc_invalid_op", "asm_exc_invalid_op", "panic",
    "show_stack", "show_trace_log_lvl",
})  # fmt: skip


def _splat_signature(splat: Splat) -> str:
    """kind-what: a bad page's reason, else the function RIP or the trace names."""
    for line in splat.excerpt:
        if m := re.search(r"page dumped because: (.+)", line):
            return f"{splat.kind}-{_words(m.group(1), 4)}"
    for line in splat.excerpt:
        if m := re.search(r"RIP: \w+:([\w.]+)\+", line):
            return f"{splat.kind}-{m.group(1)}"
    for entry in splat.call_trace:
        m = re.match(r"([\w.]+)\+0x", entry)
        if not entry.startswith("?") and m and m.group(1) not in _REPORTING_FRAMES:
            return f"{splat.kind}-{m.group(1)}"
    return splat.kind


def components(verdict: compare.ScenarioVerdict) -> list[str]:
    """Every (check, folio kind or op) that differs, most telling first."""
    found: list[tuple[int, str]] = []
    for step in verdict.steps:
        if step["errno"] != step["expected_errno"]:
            found.append((len(CHECKS), f"errno-{step['op']}"))
    for check in verdict.recalls:
        if check.get("verdict") == "fail":
            found.append((len(CHECKS), f"recall-{check.get('expected')}"))
    for line in verdict.diff.splitlines():
        if line.startswith("vmstat "):  # a counter the model predicts (deferred split, ...)
            found.append((len(CHECKS), f"vmstat-{line.split()[1].rstrip(':')}"))
    for pv in verdict.probes:
        if pv.verdict != "fail":
            continue
        for problem in pv.problems:
            found += [(i, f"{name}-vma") for i, (name, text) in enumerate(CHECKS)
                      if text in problem]  # fmt: skip
        for fv in pv.folios:
            if fv.verdict != "fail":
                continue
            kind = fv.expected.get("kind", "?")
            for problem in fv.problems:
                for i, (name, text) in enumerate(CHECKS):
                    if text in problem:
                        found.append((i, f"{name}-{kind}"))
                        break
    ordered: list[str] = []
    for _, name in sorted(found, key=lambda item: item[0]):
        if name not in ordered:
            ordered.append(name)
    return ordered


def _classify(
    doc: Doc,
    scenario: workload.Scenario,
    verdict: compare.ScenarioVerdict,
    console: ConsoleReport,
    booted: machine.BootResult,
) -> Outcome:
    name = scenario.name
    splats = [s for s in console.splats if s.job == name]
    fatal = next((s for s in splats if s.fatal), None)
    diff = verdict.diff
    if fatal is not None:
        return Outcome(name, doc, scenario, "crash", _splat_signature(fatal),
                       f"kernel {fatal.kind}: {fatal.headline}", diff)  # fmt: skip
    if booted.timed_out_in == name:
        return Outcome(name, doc, scenario, "hang", "hang", "the guest hung in it", diff)
    if splats:
        return Outcome(name, doc, scenario, "splat", _splat_signature(splats[0]),
                       f"kernel {splats[0].kind}: {splats[0].headline}", diff)  # fmt: skip
    if verdict.verdict == "pass":
        return Outcome(name, doc, scenario, "pass")
    if verdict.verdict in ("environment", "skipped"):
        return Outcome(name, doc, scenario, verdict.verdict, None, verdict.reason or "", diff)
    if verdict.verdict == "fail":
        parts = components(verdict)
        return Outcome(name, doc, scenario, "mismatch", parts[0] if parts else "mismatch",
                       verdict.reason or "", diff, parts=parts)  # fmt: skip
    return Outcome(name, doc, scenario, "error", f"error-{_words(verdict.reason or '')}",
                   verdict.reason or "", diff)  # fmt: skip


def same_failure(outcome: Outcome, signature: str) -> bool:
    """Whether an outcome shows the failure a signature names (shrink.py's test): the same
    crash, hang or splat, or a mismatch in which that check still differs on that kind."""
    if outcome.status in ("pass", "environment", "skipped"):
        return False
    return outcome.signature == signature or signature in outcome.parts


# --- the campaign ------------------------------------------------------------------------------


@dataclass
class FuzzOptions:
    seed: int = 1
    count: int | None = None
    seconds: float | None = None
    batch: int = DEFAULT_BATCH
    job_timeout: float = DEFAULT_JOB_TIMEOUT
    shrink: bool = True
    first: int = 0  # index of the first workload (a campaign can be continued)
    stop_on_find: bool = False  # end the campaign after its first finding is saved


@dataclass
class Campaign:
    options: FuzzOptions
    fuzz_dir: Path
    counts: Counter[str] = field(default_factory=Counter)
    repeats: Counter[str] = field(default_factory=Counter)
    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    coverage: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    environment: list[dict[str, str]] = field(default_factory=list)
    workloads: int = 0
    started: float = field(default_factory=time.monotonic)
    wall: float = 0.0

    def summary(self, runner: GuestRunner | None, kernel: dict[str, Any]) -> dict[str, Any]:
        wall = self.wall or time.monotonic() - self.started
        timing = runner.timing.to_json() if runner is not None else {}
        return {
            "seed": self.options.seed,
            "first": self.options.first,
            "generator_version": generate.GENERATOR_VERSION,
            "kernel": kernel,
            "workloads": self.workloads,
            "passed": self.counts["pass"],
            "mismatches": self.counts["mismatch"],
            "crashes": self.counts["crash"],
            "hangs": self.counts["hang"],
            "splats": self.counts["splat"],
            "errors": self.counts["error"],
            "model_errors": self.counts["model-error"],
            "environment": self.counts["environment"],
            "skipped": self.counts["skipped"],
            "environment_reasons": Counter(e["reason"] for e in self.environment).most_common(),
            "found": [f["path"] for f in self.found.values()],
            "findings": list(self.found.values()),
            "repeats": dict(self.repeats),
            "boots": runner.boots if runner is not None else 0,
            "wall_seconds": round(wall, 2),
            "workloads_per_second": round(self.workloads / wall, 3) if wall > 0 else None,
            "workloads_per_hour": round(self.workloads / wall * 3600) if wall > 0 else None,
            "seconds": timing,
            "coverage": [
                {"op": op, "kind": kind, "alignment": al, "steps": n}
                for (op, kind, al), n in sorted(self.coverage.items())
            ],
        }


def coverage_table(coverage: Counter[tuple[str, str, str]]) -> str:
    """op x folio kind x aligned/misaligned, steps generated in each cell."""
    cols = [(k, a) for k in generate.KINDS for a in ("aligned", "misaligned")]
    heads = [f"{k[:5] if k != 'private-file' else 'pfile'}/{a[:3]}" for k, a in cols]
    width = max(len(h) for h in heads) + 1
    lines = [f"  {'op':<12}" + "".join(f"{h:>{width}}" for h in heads) + f"{'no map':>{width}}"]
    for op in workload.OPS:
        cells = [coverage.get((op, k, a), 0) for k, a in cols]
        lines.append(
            f"  {op:<12}" + "".join(f"{c:>{width}}" for c in cells)
            + f"{coverage.get((op, '-', '-'), 0):>{width}}"
        )  # fmt: skip
    return "\n".join(lines)


def _found_config(cfg: runconfig.RunConfig, doc: Doc, header: str) -> str:
    """A run config: the campaign's kernel and machine, the shrunk scenario inline."""
    k = cfg.kernel
    kernel: dict[str, Any] = {"source": str(k.source)}
    if k.ref:
        kernel["ref"] = k.ref
    kernel["series"] = str(k.series) if k.series else "none"
    kernel["base_config"] = k.base_config
    kernel["fragments"] = [str(p) for p in k.fragments]
    if k.cmdline:
        kernel["cmdline"] = k.cmdline
    m = cfg.machine
    head = yaml.safe_dump(
        {"kernel": kernel, "machine": {"accel": m.accel, "memory": f"{m.memory_mb}M",
                                       "cpus": m.cpus}},
        sort_keys=False, width=1 << 20,
    )  # fmt: skip
    body = dump_docs([doc], header)
    return head + body


def stop_on_sigterm() -> None:
    """A campaign stopped with SIGTERM (a session's end, `timeout`) ends as an interrupted
    one: its summary and findings so far are written, its QEMU is stopped."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def fuzz_body(options: FuzzOptions) -> run.Body:
    """The body of `harness fuzz` for run.execute (run dir, exit status, interrupts)."""

    def body(cfg: runconfig.RunConfig, state: run.RunState, phases: report.Phases,
             vm: machine.Machine) -> int:  # fmt: skip
        fuzz_dir = state.run_dir / "fuzz"
        (fuzz_dir / "found").mkdir(parents=True, exist_ok=True)
        how = f"--count {options.count}" if options.count is not None else ""
        if options.seconds is not None:
            how = f"--time {options.seconds:g}s"
        state.metadata["reproducer"] = (
            f"harness fuzz --config {cfg.path} --seed {options.seed} {how}".strip()
        )
        campaign = Campaign(options, fuzz_dir)
        runner: GuestRunner | None = None
        try:
            kernel = run.prepare_kernel(cfg, state.run_dir, phases, state)
            t = phases.start("accel", f"accel: {cfg.machine.accel}")
            probe_image = initramfs.build(fuzz_dir / "probe.cpio", run.GUEST_TESTS, [])
            accel, why = machine.resolve_accel(
                cfg.machine.accel, kernel.bzimage, probe_image, state.run_dir
            )
            probe_image.unlink(missing_ok=True)
            phases.finish("accel", t, f"{accel} ({why})")
            state.machine.update(accel=accel, accel_reason=why)
            runner = GuestRunner(kernel.bzimage, cfg, accel, fuzz_dir / "boots", vm,
                                 options.job_timeout, phases.progress.say)  # fmt: skip
            campaign.started = time.monotonic()
            _campaign(cfg, campaign, runner, phases)
        finally:
            campaign.wall = time.monotonic() - campaign.started
            summary = campaign.summary(runner, state.kernel)
            report.write_json(fuzz_dir / "summary.json", summary)
            state.metadata["fuzz"] = {k: summary[k] for k in ("seed", "workloads", "boots")}
            if runner is not None and runner.qemu_command:
                state.metadata["qemu_command"] = runner.qemu_command
            _print_summary(summary, campaign)
        found = sum(campaign.counts[s] for s in FOUND)
        state.verdict = "fail" if found else "pass"
        return run.EXIT_FAIL if found else run.EXIT_PASS

    return body


def _campaign(cfg: runconfig.RunConfig, campaign: Campaign, runner: GuestRunner,
              phases: report.Phases) -> None:  # fmt: skip
    options = campaign.options
    say = phases.progress.say
    index = options.first
    # The series has patch 0004's fault_around_whole_folio; a kernel without it would only
    # report such workloads as skipped.
    whole_folio = cfg.kernel.series is not None
    deadline = campaign.started + options.seconds if options.seconds is not None else None

    def make_batch(first: int, size: int) -> list[Prepared]:
        docs = [
            generate.generate_doc(options.seed, i, whole_folio) for i in range(first, first + size)
        ]
        return runner.prepare(docs)

    def next_size() -> int:
        size = options.batch
        if options.count is not None:
            size = min(size, options.count - campaign.workloads - queued[0])
        return size

    # The next batch is generated and predicted while the guest runs this one: the harness
    # and QEMU use a core each instead of taking turns.
    queued = [0]  # workloads handed to the generator and not yet run
    ahead = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    upcoming: concurrent.futures.Future[list[Prepared]] | None = None
    try:
        while True:
            if options.count is not None and campaign.workloads >= options.count:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if options.stop_on_find and campaign.found:
                break
            if upcoming is None:
                size = next_size()
                upcoming = ahead.submit(make_batch, index, size)
                index += size
                queued[0] += size
            batch = upcoming.result()
            upcoming = None
            size = next_size()
            if size > 0 and (deadline is None or time.monotonic() < deadline):
                upcoming = ahead.submit(make_batch, index, size)
                index += size
                queued[0] += size
            outcomes = runner.run_prepared(batch)
            campaign.workloads += len(outcomes)
            queued[0] -= len(batch)
            for outcome in outcomes:
                campaign.counts[outcome.status] += 1
                if outcome.scenario is not None:
                    campaign.coverage.update(generate.coverage(outcome.scenario))
                if outcome.status == "environment":
                    campaign.environment.append(
                        {"workload": outcome.name, "reason": outcome.reason}
                    )
                elif outcome.status in FOUND:
                    _found(cfg, campaign, runner, outcome, say)
            elapsed = time.monotonic() - campaign.started
            say(
                f"fuzz: {campaign.workloads} workloads in {elapsed:.0f}s "
                f"({campaign.workloads / elapsed * 3600:.0f}/hour), {runner.boots} boots; "
                f"found {sum(campaign.counts[s] for s in FOUND)}, "
                f"environment {campaign.counts['environment']}"
            )
    finally:
        ahead.shutdown(wait=False, cancel_futures=True)


def _found(cfg: runconfig.RunConfig, campaign: Campaign, runner: GuestRunner, outcome: Outcome,
           say: Callable[[str], None]) -> None:  # fmt: skip
    signature = outcome.signature or outcome.status
    if signature in campaign.found:
        campaign.repeats[signature] += 1
        campaign.found[signature]["repeats"] += 1
        return
    found_after = time.monotonic() - campaign.started
    say(f"fuzz: {outcome.status} {signature} in {outcome.name}: {outcome.reason}")
    doc, diff = outcome.doc, outcome.diff
    steps_before = len(doc["steps"])
    if campaign.options.shrink and outcome.status != "model-error":
        t = time.monotonic()
        result = shrink.shrink(outcome, runner, say)
        runner.timing.shrink += time.monotonic() - t
        doc, diff = result.doc, result.diff or diff
    elif outcome.status == "model-error":
        doc = shrink.shrink_offline(doc, signature, _model_signature)
    slug = re.sub(r"[^a-z0-9_.-]+", "-", signature.lower()).strip("-") or "finding"
    named = dict(doc)
    named["name"] = f"fuzz-{slug}"
    named["description"] = (
        f"harness fuzz, seed {campaign.options.seed}: {outcome.status} {signature} "
        f"(from {outcome.name}, shrunk from {steps_before} to {len(doc['steps'])} steps)"
    )
    found_dir = campaign.fuzz_dir / "found"
    path = found_dir / f"{slug}.yaml"
    header = (
        f"harness fuzz finding {signature}: {outcome.reason}\nRe-run: harness run --config {path}"
    )
    path.write_text(_found_config(cfg, named, header))
    (found_dir / f"{slug}.diff").write_text(
        f"{outcome.status} {signature}: {outcome.reason}\n\n{diff}"
    )
    (found_dir / f"{slug}.original.yaml").write_text(dump_docs([outcome.doc]))
    campaign.found[signature] = {
        "signature": signature,
        "status": outcome.status,
        "path": str(path),
        "workload": outcome.name,
        "steps": len(doc["steps"]),
        "steps_before": steps_before,
        "reason": outcome.reason,
        "repeats": 0,
        "found_after_seconds": round(found_after, 1),
        "shrink_seconds": round(time.monotonic() - campaign.started - found_after, 1),
    }
    say(f"fuzz: saved {path} ({len(doc['steps'])} steps)")


def _model_signature(doc: Doc) -> str | None:
    try:
        scenario = generate.validate(doc)
    except HarnessError:
        return None
    try:
        model.predict(scenario)
    except HarnessError as exc:
        return f"model-error-{_words(str(exc).split('the model failed:')[-1])}"
    return None


def _print_summary(summary: dict[str, Any], campaign: Campaign) -> None:
    print(
        f"fuzz: seed {summary['seed']}: {summary['workloads']} workloads, "
        f"{summary['passed']} passed, {summary['environment']} environment, "
        f"{summary['mismatches']} mismatches, {summary['crashes']} crashes, "
        f"{summary['hangs']} hangs, {summary['splats']} splats, {summary['errors']} errors, "
        f"{summary['model_errors']} model errors; {summary['boots']} boots, "
        f"{summary['workloads_per_second']} workloads/s"
    )
    for finding in summary["findings"]:
        print(
            f"  found {finding['signature']} ({finding['status']}, {finding['steps']} steps, "
            f"{finding['repeats']} repeats): {finding['path']}"
        )
    print(coverage_table(campaign.coverage))


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1h' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if m is None:
        raise HarnessError(f"--time {text!r}: expected a duration such as 90s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
