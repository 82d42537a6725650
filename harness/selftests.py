"""The kernel's own vm selftests (tools/testing/selftests/vm), built and judged per kernel.

Layers, each usable alone:
  plan      the `selftests:` section of a run config: which programs, arguments, deadlines;
            a program is a 6.1 vm selftest, or one of the harness's own guest programs
            (guest-tests/<program>.c, in the guest's /bin, e.g. mmstress)
  build     static binaries from the same source tree (and series) as the kernel, against
            that tree's exported headers, cached like kernels
  guest     one initramfs job per test: the program runs under busybox `timeout` (the
            per-test deadline lives in the guest, so a hang costs one test, not the run),
            its output framed on the data channel
  outcome   data channel -> per-test lines -> ktap.parse -> ktap.judge, plus the console's
            splats and the host's backstop
  compare   per-test (baseline, patched) outcome pairs; 'passes unpatched, fails patched'
            is a regression
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness import cache, ktap, patches, proc, prune, schema
from harness.console import ConsoleReport
from harness.errors import BuildError, HarnessError
from harness.initramfs import Job
from harness.source import BASE_TAG, SourceTree, git

# Programs of 6.1's tools/testing/selftests/vm/Makefile that build as plain C targets.
PROGRAMS = (
    "compaction_test", "gup_test", "hugetlb-madvise", "hugepage-mmap", "hugepage-mremap",
    "hugepage-shm", "hugepage-vmemmap", "khugepaged", "madv_populate", "map_fixed_noreplace",
    "map_hugetlb", "map_populate", "memfd_secret", "migration", "mlock-random-test",
    "mlock2-tests", "mrelease_test", "mremap_dontunmap", "mremap_test", "on-fault-limit",
    "thuge-gen", "transhuge-stress", "userfaultfd", "soft-dirty", "split_huge_page_test",
    "ksm_tests", "va_128TBswitch", "virtual_address_range", "write_to_hugetlbfs",
)  # fmt: skip
SELFTEST_DIR = "tools/testing/selftests/vm"
# What the binaries are made of: the key of a selftest build is these trees' git ids.
BUILD_INPUTS = (
    "tools/testing/selftests/vm", "tools/testing/selftests/kselftest.h",
    "tools/testing/selftests/lib.mk", "tools/include", "include/uapi",
    "arch/x86/include/uapi", "mm/gup_test.h", "scripts/headers_install.sh", "scripts/unifdef.c",
)  # fmt: skip
BUILD_FLAGS = ("-static",)
GUEST_DIR = "/selftests"
# The harness's own guest programs (guest-tests/*.c): every initramfs has them in /bin.
GUEST_TESTS = Path(__file__).resolve().parent.parent / "guest-tests"
GUEST_BIN = "/bin"
GUEST_WORKDIR = "/tmp"  # where a guest program runs (tmpfs)
DATA_TTY = "/dev/ttyS1"
MARK_BEGIN = "@@SELFTEST-BEGIN"
MARK_END = "@@SELFTEST-END"
SETUP_JOB = "selftests-setup"
HOST_GRACE = 60.0  # seconds the host backstop adds to the longest in-guest deadline
REGRESSED = frozenset({"fail", "timeout", "crash", "not-run"})


class SelftestError(HarnessError):
    """The selftests cannot be built or run as configured."""


# --- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSpec:
    name: str  # unique in the plan; the job and result name
    program: str  # binary in tools/testing/selftests/vm, or a guest program (guest=True)
    args: tuple[str, ...] = ()
    deadline: float = 300.0  # seconds, enforced in the guest
    bounded: bool = False  # runs until killed: its deadline is its duration, not a hang
    sysctl: tuple[tuple[str, str], ...] = ()  # (vm.overcommit_memory, 1): set, then restored
    guest: bool = False  # guest-tests/<program>.c, run as /bin/<program>

    @property
    def workdir(self) -> str:
        return GUEST_WORKDIR if self.guest else GUEST_DIR

    def command(self) -> str:
        binary = f"{GUEST_BIN}/{self.program}" if self.guest else f"./{self.program}"
        return shlex.join([binary, *self.args])


@dataclass(frozen=True)
class SelftestPlan:
    tests: tuple[TestSpec, ...]
    swap_mb: int = 0  # mkswap + swapon a RAM disk (/dev/ram0) of this size first
    setup: tuple[str, ...] = ()  # extra shell commands before the first test

    @property
    def programs(self) -> tuple[str, ...]:
        """The vm selftest programs to build; none means no selftests build at all."""
        return tuple(sorted({t.program for t in self.tests if not t.guest}))

    @property
    def guest_programs(self) -> tuple[str, ...]:
        """The harness's guest programs the plan runs (always in the initramfs)."""
        return tuple(sorted({t.program for t in self.tests if t.guest}))

    @property
    def host_deadline(self) -> float:
        return max((t.deadline for t in self.tests), default=60.0) + HOST_GRACE


def guest_programs(directory: Path | None = None) -> tuple[str, ...]:
    """The guest programs a plan may name: guest-tests/<name>.c."""
    return tuple(sorted(p.stem for p in (directory or GUEST_TESTS).glob("*.c")))


def parse_plan(node: schema.Node, guest: Iterable[str] | None = None) -> SelftestPlan:
    """The `selftests:` section; errors name file, line and key.

    `guest` names the guest programs a test may run (default: guest-tests/*.c). A name
    that is both a vm selftest and a guest program means the vm selftest.
    """
    known_guest = tuple(sorted(guest_programs() if guest is None else set(guest)))
    f = node.mapping(("deadline", "swap", "setup", "tests"))
    default_deadline = f["deadline"].as_float(minimum=1) if "deadline" in f else 300.0
    swap_mb = f["swap"].as_size(align=1 << 20) >> 20 if "swap" in f else 0
    setup = tuple(item.as_str() for item in f["setup"].items()) if "setup" in f else ()
    tests: list[TestSpec] = []
    seen: dict[str, schema.Node] = {}
    for item in schema.require(f, "tests", node).items():
        spec = _test_spec(item, default_deadline, known_guest)
        if spec.name in seen:
            raise item.error(f"test name '{spec.name}' is already used at {seen[spec.name].where}")
        seen[spec.name] = item
        tests.append(spec)
    if not tests:
        raise f["tests"].error("list at least one test")
    return SelftestPlan(tuple(tests), swap_mb, setup)


def _test_spec(
    item: schema.Node, default_deadline: float, known_guest: tuple[str, ...]
) -> TestSpec:
    if not item.is_mapping():
        program = item.as_str()
        fields: dict[str, schema.Node] = {}
        where = item
    else:
        fields = item.mapping(("name", "program", "args", "deadline", "bounded", "sysctl"))
        where = fields.get("program") or schema.require(fields, "name", item)
        program = where.as_str()
    guest = program not in PROGRAMS
    if guest and program not in known_guest:
        raise where.error(
            f"'{program}' is neither a 6.1 vm selftest program nor a guest program "
            f"(guest-tests/<program>.c); vm selftests: {', '.join(PROGRAMS)}; "
            f"guest programs: {', '.join(known_guest) or '(none)'}"
        )
    name = fields["name"].as_str() if "name" in fields else program
    if not name or any(c.isspace() or c in "/'\"" for c in name):
        raise (fields.get("name") or item).error(f"test name {name!r}: no spaces, quotes or '/'")
    args: tuple[str, ...] = ()
    if "args" in fields:
        args = tuple(a.as_text() for a in fields["args"].items())
    deadline = fields["deadline"].as_float(minimum=1) if "deadline" in fields else default_deadline
    bounded = fields["bounded"].as_bool() if "bounded" in fields else False
    sysctl = tuple(_pairs(fields["sysctl"])) if "sysctl" in fields else ()
    return TestSpec(name, program, args, deadline, bounded, sysctl, guest)


def _pairs(node: schema.Node) -> list[tuple[str, str]]:
    """A mapping of sysctl names (vm.overcommit_memory) to values."""
    pairs = []
    for key, value in node.entries():
        if not key or not all(part.replace("_", "").isalnum() for part in key.split(".")):
            raise value.error(f"not a sysctl name: {key!r} (expected e.g. vm.overcommit_memory)")
        pairs.append((key, value.as_text()))
    return pairs


# --- build -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelftestBuild:
    key: str
    directory: Path  # the store entry: bin/, headers/, build.log, meta.json
    programs: dict[str, Path]
    cached: bool
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "directory": str(self.directory),
            "programs": sorted(self.programs),
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
        }


def compiler_version() -> str:
    return proc.output_of(["gcc", "--version"]).splitlines()[0]


def _input_ids(tree: Path, rev: str = "HEAD") -> dict[str, str]:
    ids = {}
    for path in BUILD_INPUTS:
        out = git(tree, "rev-parse", f"{rev}:{path}", check=False)
        ids[path] = out.stdout.strip() if out.returncode == 0 else "absent"
    return ids


def _touches_inputs(series: patches.Series) -> bool:
    """Whether any patch of the series changes a file the selftests are built from."""
    for patch in series.patches:
        for line in patch.path.read_text(errors="replace").splitlines():
            if line.startswith("diff --git "):
                for name in line.split()[2:4]:
                    name = name.split("/", 1)[1] if "/" in name else name
                    if any(name == i or name.startswith(i + "/") for i in BUILD_INPUTS):
                        return True
    return False


def _key(source: SourceTree, ids: dict[str, str], wanted: list[str]) -> tuple[str, str]:
    key_text = json.dumps(
        {
            "source": source.identity,
            "inputs": ids,
            "compiler": compiler_version(),
            "flags": list(BUILD_FLAGS),
            "programs": wanted,
        },
        sort_keys=True,
    )
    return cache.sha256_bytes(key_text.encode())[:20], key_text


def build(
    source: SourceTree, series: patches.Series, programs: Iterable[str], log_path: Path
) -> SelftestBuild:
    """Static selftest binaries for the source with `series` applied; cached by content.

    The key is the git ids of what the binaries are built from (the selftests, the uAPI
    headers, tools/include) plus the compiler, so a series that touches neither shares the
    baseline's binaries, and one that changes a uAPI header gets its own. For such a
    series the key follows from the pristine base, so a cached build needs neither the
    tree nor its lock. Building reads the shared source tree, so it holds the source lock;
    every output goes to the cache.
    """
    wanted = sorted(set(programs))
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def result(key: str, cached: bool) -> SelftestBuild:
        store = cache.root() / "selftests" / key
        bins = {p: store / "bin" / p for p in wanted}
        if cached:
            prune.touch(store)
            with log_path.open("a") as log:
                log.write(f"# selftests {key} found in the cache: no make\n")
        return SelftestBuild(key, store, bins, cached, time.monotonic() - started)

    def cached(key: str) -> bool:
        return all((cache.root() / "selftests" / key / "bin" / p).exists() for p in wanted)

    if not _touches_inputs(series):
        key, _ = _key(source, _input_ids(source.tree, BASE_TAG), wanted)
        if cached(key):
            return result(key, cached=True)
    with cache.locked(f"source-{source.identity}"):
        head = patches.apply(source, series)
        key, key_text = _key(source, _input_ids(source.tree), wanted)
        if cached(key):
            return result(key, cached=True)
        store = cache.root() / "selftests" / key
        with cache.staging_dir(store) as staging, log_path.open("a") as log:
            log.write(f"# selftests {key}: building {' '.join(wanted)} at {head}\n")
            _make(source.tree, staging, wanted, log, log_path)
            (staging / "meta.json").write_text(key_text + "\n")
            (staging / "build.log").write_text(log_path.read_text())
        prune.touch(store, measure=True)
    prune.enforce_cap(protect=(store,))
    return result(key, cached=False)


def _make(tree: Path, out: Path, programs: list[str], log: object, log_path: Path) -> None:
    headers = out / "headers"
    jobs = str(max(1, min(4, len(programs))))
    steps = [
        # The tree's exported uAPI headers, built out of tree (O=) so the tree stays clean.
        ["make", "-s", "-C", str(tree), f"O={out / 'obj'}", "ARCH=x86_64",
         f"INSTALL_HDR_PATH={headers}", "headers_install"],
        ["make", "-C", str(tree / SELFTEST_DIR), f"-j{jobs}", f"OUTPUT={out / 'bin'}",
         f"EXTRA_CFLAGS={' '.join(BUILD_FLAGS)}", f"KHDR_INCLUDES=-isystem {headers}/include",
         *[str(out / "bin" / p) for p in programs]],
    ]  # fmt: skip
    (out / "bin").mkdir()
    for argv in steps:
        try:
            proc.run(argv, log=log, log_path=log_path)  # type: ignore[arg-type]
        except proc.CommandError as exc:
            errors = [line for line in exc.output.splitlines() if "error" in line.lower()]
            raise BuildError(
                f"selftests build failed (status {exc.returncode}) in {tree / SELFTEST_DIR}; "
                f"see {log_path}\n" + "\n".join(errors[:10])
            ) from None
    for program in programs:
        if not (out / "bin" / program).exists():
            raise BuildError(f"selftests build made no {program}; see {log_path}")
    proc.run(["rm", "-rf", str(out / "obj")])


# --- guest -----------------------------------------------------------------------------------


def setup_command(plan: SelftestPlan) -> str:
    lines = ["set -x"]
    if plan.swap_mb:
        lines += ["mkswap /dev/ram0", "swapon /dev/ram0", "cat /proc/swaps"]
    lines += list(plan.setup)
    return "\n".join(lines)


def test_command(spec: TestSpec) -> str:
    """The job's shell: frame the output on the data channel, kill at the deadline.

    busybox `timeout -s KILL` ends the program at its deadline (status 137); uptime before
    and after tells a deadline kill from any other SIGKILL. `kill -9 -1` then ends whatever
    the test forked (everything but /init and this shell), so the next test starts clean.
    """
    name = spec.name
    deadline = int(spec.deadline) if spec.deadline == int(spec.deadline) else spec.deadline
    knobs = [f"/proc/sys/{key.replace('.', '/')}" for key, _ in spec.sysctl]
    save = [f"old{i}=$(cat {k})" for i, k in enumerate(knobs)]
    save += [f"echo {shlex.quote(v)} > {k}" for k, (_, v) in zip(knobs, spec.sysctl, strict=True)]
    restore = [f'echo "$old{i}" > {k}' for i, k in enumerate(knobs)]
    return "\n".join(
        [
            *save,
            f"cd {spec.workdir}",
            f"echo {MARK_BEGIN} {name} > {DATA_TTY}",
            "read t0 rest < /proc/uptime",
            f"timeout -s KILL {deadline} {spec.command()} > {DATA_TTY} 2>&1 < /dev/null",
            "st=$?",
            "read t1 rest < /proc/uptime",
            "kill -9 -1 2>/dev/null",
            *restore,
            f"echo {MARK_END} {name} status=$st start=$t0 end=$t1 > {DATA_TTY}",
            "exit $st",
        ]
    )


def guest_jobs(plan: SelftestPlan, tests: Iterable[TestSpec] | None = None) -> list[Job]:
    jobs = [Job(SETUP_JOB, command=setup_command(plan))]
    jobs += [Job(t.name, command=test_command(t)) for t in (plan.tests if tests is None else tests)]
    return jobs


def guest_files(built: SelftestBuild | None) -> dict[str, Path]:
    """The selftest binaries for the initramfs; none without a build (guest programs only)."""
    if built is None:
        return {}
    return {f"{GUEST_DIR.lstrip('/')}/{p}": path for p, path in built.programs.items()}


# --- outcome ---------------------------------------------------------------------------------


@dataclass
class Framed:
    """One test's part of the data channel."""

    name: str
    lines: list[str] = field(default_factory=list)
    status: int | None = None
    seconds: float | None = None
    ended: bool = False


def split_data(lines: Iterable[str]) -> dict[str, Framed]:
    """Data channel lines -> per-test output, by the BEGIN/END frames test_command writes.

    A marker may follow a test's last, unterminated line on the same line.
    """
    found: dict[str, Framed] = {}
    current: Framed | None = None
    for raw in lines:
        line = raw.rstrip("\r\n").replace("\r", "")
        begin, end = line.find(MARK_BEGIN), line.find(MARK_END)
        if begin >= 0 and (words := line[begin + len(MARK_BEGIN) :].split()):
            if current is not None and line[:begin].strip():
                current.lines.append(line[:begin])
            current = found[words[0]] = Framed(words[0])
            continue
        if end >= 0 and (words := line[end + len(MARK_END) :].split()):
            framed = found.setdefault(words[0], Framed(words[0]))
            if current is framed and line[:end].strip():
                framed.lines.append(line[:end])
            values = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            status = values.get("status", "")
            framed.status = int(status) if status.isdigit() else None
            try:
                framed.seconds = round(float(values["end"]) - float(values["start"]), 2)
            except (KeyError, ValueError):
                framed.seconds = None
            framed.ended = True
            current = None
            continue
        if current is not None:
            current.lines.append(line)
    return found


@dataclass
class TestResult:
    name: str
    program: str
    args: tuple[str, ...]
    outcome: str  # ktap.OUTCOMES
    reason: str
    status: int | None
    seconds: float | None
    counts: dict[str, int]
    cases: list[dict[str, object]]
    splats: list[str]
    output: str | None = None  # path of the raw output, relative to the run directory
    boot: int = 1  # which boot of this kernel ran it

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name, "program": self.program, "args": list(self.args),
            "outcome": self.outcome, "reason": self.reason, "status": self.status,
            "seconds": self.seconds, "counts": self.counts, "cases": self.cases,
            "splats": self.splats, "output": self.output, "boot": self.boot,
        }  # fmt: skip


def judge_test(
    spec: TestSpec,
    framed: Framed | None,
    console: ConsoleReport,
    boot_outcome: str,
    died_in: str | None,
) -> TestResult:
    """One test's outcome from its framed output, the console and how the boot ended.

    `died_in` names the test the guest was running when the boot ended other than 'done'
    (the host backstop or a fatal splat); that test is a timeout or a crash, and tests the
    boot never reached are 'not-run'.
    """
    splats = [s for s in console.splats if s.job == spec.name]
    fatal = next((s for s in splats if s.fatal), None)
    stream = ktap.parse(framed.lines if framed else [])
    crashed: str | None = None
    timed_out = False
    status = framed.status if framed and framed.ended else None
    if fatal is not None:
        crashed = f"kernel {fatal.kind}: {fatal.headline}"
    elif died_in == spec.name and boot_outcome == "timeout":
        timed_out = True  # the in-guest deadline did not hold: the host backstop fired
    elif died_in == spec.name:
        crashed = f"guest {boot_outcome} while it ran"
    elif status == 137 and framed and framed.seconds is not None:
        timed_out = framed.seconds >= spec.deadline - 1
    if framed is None and crashed is None and not timed_out:
        return TestResult(spec.name, spec.program, spec.args, "not-run",
                          "the guest never started it", None, None, {}, [], [])  # fmt: skip
    verdict = ktap.judge(stream, ktap.Ending(status, timed_out, crashed, spec.bounded))
    outcome, reason = verdict.outcome, verdict.reason
    warnings = [s for s in splats if not s.fatal]
    if outcome in ("pass", "skip") and warnings:
        outcome, reason = "fail", f"kernel {warnings[0].kind}: {warnings[0].headline}"
    if outcome == "timeout" and died_in == spec.name:
        reason = "hung past its deadline; the host killed the guest"
    return TestResult(
        spec.name, spec.program, spec.args, outcome, reason, status,
        framed.seconds if framed else None, verdict.counts,
        [c.to_json() for c in stream.cases], [f"{s.kind}: {s.headline}" for s in splats],
    )  # fmt: skip


# --- compare ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    name: str
    baseline: str  # outcome
    patched: str
    change: str  # same | regression | fixed | changed
    baseline_reason: str = ""
    patched_reason: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name, "baseline": self.baseline, "patched": self.patched,
            "change": self.change, "baseline_reason": self.baseline_reason,
            "patched_reason": self.patched_reason,
        }  # fmt: skip


def classify(baseline: str, patched: str) -> str:
    """'regression' when it passes unpatched and does not pass patched."""
    if baseline == patched:
        return "same"
    if baseline == "pass" and patched in REGRESSED:
        return "regression"
    if patched == "pass" and baseline in REGRESSED:
        return "fixed"
    return "changed"


def compare(
    names: Iterable[str], baseline: dict[str, TestResult], patched: dict[str, TestResult]
) -> list[Pair]:
    pairs = []
    for name in names:
        b, p = baseline.get(name), patched.get(name)
        b_out, p_out = (b.outcome if b else "not-run"), (p.outcome if p else "not-run")
        reasons = (b.reason if b else "", p.reason if p else "")
        pairs.append(Pair(name, b_out, p_out, classify(b_out, p_out), *reasons))
    return pairs


def single_table(results: list[TestResult]) -> str:
    if not results:
        return "(no tests)"
    width = max(len(r.name) for r in results)
    lines = []
    for r in results:
        took = f"{r.seconds:7.1f}s" if r.seconds is not None else " " * 8
        reason = f"  {r.reason}" if r.reason else ""
        lines.append(f"  {r.name:<{width}}  {r.outcome.upper():<8} {took}{reason}")
    return "\n".join(lines)


def pair_table(pairs: list[Pair], labels: tuple[str, str] = ("baseline", "patched")) -> str:
    """Per test: both outcomes, the change, and the reasons for anything not a pass."""
    if not pairs:
        return "(no tests)"
    width = max(len(p.name) for p in [*pairs, Pair("test", "", "", "")])
    head = f"  {'test':<{width}}  {labels[0]:<9} {labels[1]:<9} change"
    lines = [head, "  " + "-" * (len(head) - 2)]
    for p in pairs:
        mark = "  <-- REGRESSION" if p.change == "regression" else ""
        lines.append(
            f"  {p.name:<{width}}  {p.baseline.upper():<9} {p.patched.upper():<9} {p.change}{mark}"
        )
        for label, outcome, reason in (
            (labels[0], p.baseline, p.baseline_reason),
            (labels[1], p.patched, p.patched_reason),
        ):
            if outcome != "pass" and reason:
                lines.append(f"  {'':<{width}}    {label}: {reason}")
    return "\n".join(lines)
