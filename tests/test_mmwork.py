"""mmwork, the guest workload interpreter, run for real on the host.

mmwork is a static C program meant for the guest, but nothing in it is guest-specific: the
host kernel has /proc/self/pagemap, /proc/kpagecount and /proc/kpageflags too. These tests
compile it, run small line scripts (guest-tests/WORKLOAD.md, "Guest script") with `-o -`
and check the records against what the kernel really did.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "guest-tests" / "mmwork.c"
ARENA = 0x100000000000
K = 1 << 10
M = 1 << 20
PG = 4 * K
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
SPLIT = Path("/sys/kernel/debug/split_huge_pages")

PM_PRESENT = 1 << 63
PM_FILE = 1 << 61
KPF_ANON = 1 << 12
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
KPF_THP = 1 << 22


# --------------------------------------------------------------------------------------------
# Build and run


@pytest.fixture(scope="session")
def mmwork(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    build = tmp_path_factory.mktemp("mmwork")
    probe = build / "static.c"
    probe.write_text("int main(void) { return 0; }\n")
    r = subprocess.run(
        [gcc, "-static", "-o", str(build / "static"), str(probe)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"no static libc for gcc -static: {r.stderr.strip()[-300:]}")
    binary = build / "mmwork"
    # The harness builds with -Wall -Wextra; -Werror here keeps the source warning-free.
    r = subprocess.run(
        [gcc, "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return binary


@pytest.fixture
def pfns() -> None:
    """PFNs in pagemap and /proc/kpage* need CAP_SYS_ADMIN."""
    if os.geteuid() != 0 or not os.access("/proc/kpagecount", os.R_OK):
        pytest.skip("needs root: pagemap PFNs and /proc/kpagecount")


@pytest.fixture
def thp() -> None:
    try:
        mode = THP_ENABLED.read_text()
    except OSError:
        pytest.skip("kernel without transparent hugepages")
    if "[never]" in mode:
        pytest.skip("transparent hugepages are disabled on this host")


@dataclass
class Page:
    va: int
    pfn: int | None
    pagemap: int
    count: int | None
    flags: int | None
    head: int | None
    order: int | None

    @property
    def present(self) -> bool:
        return bool(self.pagemap & PM_PRESENT)


@dataclass
class Probe:
    label: str
    proc: str
    pid: int
    addr: int
    npages: int
    pages: list[Page] = field(default_factory=list)
    vmas: list[tuple[int, ...]] = field(default_factory=list)
    ended: bool = False


@dataclass
class Run:
    rc: int
    lines: list[str]
    stderr: str
    steps: dict[int, list[str]] = field(default_factory=dict)  # n -> [op, ok|err, errno, NAME]
    probes: dict[str, Probe] = field(default_factory=dict)
    vmstat: dict[str, dict[str, int]] = field(default_factory=dict)

    def step(self, n: int) -> str:
        """'ok' or 'err <errno> <NAME>' for step n."""
        return " ".join(self.steps[n][1:])

    def records(self, tag: str) -> list[str]:
        return [line for line in self.lines if line.split(" ", 1)[0] == tag]


def opt(token: str, base: int = 10) -> int | None:
    return None if token == "-" else int(token, base)


def parse(rc: int, text: str, stderr: str) -> Run:
    run = Run(rc, text.splitlines(), stderr)
    probe: Probe | None = None
    for line in run.lines:
        t = line.split(" ")
        assert all(t), f"empty token in {line!r}"
        if t[0] == "@STEP":
            assert int(t[1]) not in run.steps, f"step {t[1]} reported twice"
            run.steps[int(t[1])] = t[2:]
        elif t[0] == "@PROBE":
            assert probe is None, "@PROBE inside a probe"
            probe = Probe(t[1], t[2], int(t[3]), int(t[4], 16), int(t[5]))
            run.probes[t[1]] = probe
        elif t[0] == "@PAGE":
            assert probe is not None and len(t) == 11, line
            # T, E, W need the kernel series' kpagemc, which no host kernel has.
            if not Path("/sys/kernel/debug/folio_mapcount/kpagemc").exists():
                assert t[8:] == ["-", "-", "-"], line
            probe.pages.append(
                Page(
                    int(t[1], 16),
                    opt(t[2]),
                    int(t[3], 16),
                    opt(t[4]),
                    opt(t[5], 16),
                    opt(t[6]),
                    opt(t[7]),
                )
            )
        elif t[0] == "@VMA":
            assert probe is not None and len(t) == 7, line
            probe.vmas.append((int(t[1], 16), int(t[2], 16), *(int(x) for x in t[3:])))
        elif t[0] == "@ENDPROBE":
            assert probe is not None and probe.label == t[1]
            probe.ended = True
            probe = None
        elif t[0] == "@VMSTAT":
            run.vmstat[t[1]] = {k: int(v) for k, _, v in (x.partition("=") for x in t[2:])}
        else:
            assert probe is None, f"{line!r} inside probe {probe.label}"
    return run


def run_script(mmwork: Path, tmp_path: Path, body: list[str], name: str = "t") -> Run:
    """Run `scenario <name>`, body, `end` and parse what comes out on stdout."""
    script = tmp_path / f"{name}.script"
    script.write_text("\n".join([f"scenario {name}", *body, "end"]) + "\n")
    return run_raw(mmwork, script)


def run_raw(mmwork: Path, script: Path, *args: str) -> Run:
    r = subprocess.run(
        [str(mmwork), str(script), *(args or ("-o", "-"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return parse(r.returncode, r.stdout, r.stderr)


def assert_ran_ok(run: Run, name: str = "t") -> None:
    assert run.rc == 0, (run.lines, run.stderr)
    assert run.lines[0] == f"@SCENARIO {name}"
    assert run.lines[1].startswith("@VMSTAT begin")
    assert run.lines[-3].startswith("@VMSTAT end")
    assert run.lines[-2].startswith("@VMSTAT exit")
    assert run.lines[-1] == f"@ENDSCENARIO {name} ok"


def not_present(page: Page) -> bool:
    return (
        not page.present
        and page.pfn is None
        and page.count is None
        and page.flags is None
        and page.head is None
        and page.order is None
    )


# --------------------------------------------------------------------------------------------
# Probes of real mappings


def test_anon_thp_probe(mmwork: Path, tmp_path: Path, pfns: None, thp: None) -> None:
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 mmap main {ARENA} {4 * M} anon 0 private rw",
            f"step 2 madvise main {ARENA} {4 * M} hugepage",
            f"step 3 touch main {ARENA} {4 * M} write",
            f"step 4 probe main full {ARENA} {4 * M}",
        ],
    )
    assert_ran_ok(run)
    assert [run.step(n) for n in (1, 2, 3, 4)] == ["ok"] * 4
    assert [run.steps[n][0] for n in (1, 2, 3, 4)] == ["mmap", "madvise", "touch", "probe"]
    probe = run.probes["full"]
    assert (probe.proc, probe.addr, probe.npages) == ("main", ARENA, 1024)
    assert probe.ended
    assert [p.va for p in probe.pages] == [ARENA + i * PG for i in range(1024)]
    assert all(p.present and p.pfn == p.pagemap & ((1 << 55) - 1) for p in probe.pages)
    assert all(p.flags is not None and p.flags & KPF_ANON for p in probe.pages)

    first = probe.pages[:512]
    if first[0].order != 9:
        pytest.skip(f"the host gave no THP for the first 2M (order {first[0].order})")
    head = first[0].pfn
    assert head is not None and head % 512 == 0
    assert first[0].flags is not None and first[0].flags & KPF_COMPOUND_HEAD
    for i, page in enumerate(first):
        assert (page.pfn, page.head, page.order) == (head + i, head, 9)
        assert page.flags is not None and page.flags & KPF_THP
        if i:
            assert page.flags & KPF_COMPOUND_TAIL
    # Every page is either in a 2M folio of its own or a small page.
    for page in probe.pages[512:]:
        assert page.order in (0, 9)
        assert page.head is not None and page.pfn is not None
        assert page.pfn - page.head < (1 << page.order)

    assert len(probe.vmas) == 1
    start, end, rss_kb, anon_huge_kb, _shmem_kb, _file_kb = probe.vmas[0]
    assert (start, end, rss_kb) == (ARENA, ARENA + 4 * M, 4096)
    assert anon_huge_kb >= 2048
    begin, end_ = run.vmstat["begin"], run.vmstat["end"]
    assert "nr_anon_transparent_hugepages" in begin
    assert all(k.startswith("thp_") or k.startswith("nr_") for k in begin)
    assert end_["thp_fault_alloc"] > begin["thp_fault_alloc"]


def test_munmap_then_probe_not_present(mmwork: Path, tmp_path: Path, pfns: None) -> None:
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 mmap main {ARENA} {32 * K} anon 0 private rw",
            f"step 2 touch main {ARENA} {32 * K} write",
            f"step 3 munmap main {ARENA + 16 * K} {16 * K}",
            f"step 4 probe main half {ARENA} {32 * K}",
        ],
    )
    assert_ran_ok(run)
    pages = run.probes["half"].pages
    assert len(pages) == 8
    assert all(p.present and p.pfn and p.count == 1 and p.order == 0 for p in pages[:4])
    assert all(not_present(p) for p in pages[4:])
    assert [v[:3] for v in run.probes["half"].vmas] == [(ARENA, ARENA + 16 * K, 16)]
    # The @PAGE line of a missing page is all '-' but the raw pagemap entry.
    line = next(x for x in run.records("@PAGE") if x.startswith(f"@PAGE {ARENA + 16 * K:x} "))
    assert line.split(" ")[2:] == ["-", "0", "-", "-", "-", "-", "-", "-", "-"]


def test_fork_cow(mmwork: Path, tmp_path: Path, pfns: None) -> None:
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 mmap main {ARENA} {16 * K} anon 0 private rw",
            f"step 2 touch main {ARENA} {16 * K} write",
            "step 3 fork main child",
            f"step 4 probe main before-main {ARENA} {16 * K}",
            f"step 5 probe child before-child {ARENA} {16 * K}",
            f"step 6 touch child {ARENA} {4 * K} write",
            f"step 7 probe main after-main {ARENA} {16 * K}",
            f"step 8 probe child after-child {ARENA} {16 * K}",
        ],
    )
    assert_ran_ok(run)
    assert all(run.step(n) == "ok" for n in range(1, 9))
    bm, bc = run.probes["before-main"], run.probes["before-child"]
    am, ac = run.probes["after-main"], run.probes["after-child"]
    assert bm.pid == am.pid != bc.pid == ac.pid
    assert (bm.proc, bc.proc) == ("main", "child")
    # Before the child writes, both map the same pages.
    assert [p.pfn for p in bm.pages] == [p.pfn for p in bc.pages]
    assert all(p.count == 2 for p in bm.pages)
    # The child's write broke COW on its first page only.
    assert ac.pages[0].pfn != am.pages[0].pfn
    assert am.pages[0].pfn == bm.pages[0].pfn
    assert am.pages[0].count == 1 and ac.pages[0].count == 1
    assert [p.pfn for p in am.pages[1:]] == [p.pfn for p in ac.pages[1:]]
    assert all(p.count == 2 for p in ac.pages[1:])


def test_spawn_memfd_shared(mmwork: Path, tmp_path: Path, pfns: None) -> None:
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 file f memfd - {2 * M} none",
            f"step 2 mmap main {ARENA} {2 * M} f 0 shared rw",
            "step 3 spawn other",
            f"step 4 mmap other {ARENA + 4 * M} {2 * M} f 0 shared rw",
            f"step 5 touch main {ARENA} {32 * K} write",
            f"step 6 touch other {ARENA + 4 * M} {32 * K} write",
            f"step 7 probe main m {ARENA} {32 * K}",
            f"step 8 probe other o {ARENA + 4 * M} {32 * K}",
            "step 9 exit other",
            f"step 10 probe main m2 {ARENA} {32 * K}",
        ],
    )
    assert_ran_ok(run)
    assert all(run.step(n) == "ok" for n in range(1, 11))
    m, o = run.probes["m"], run.probes["o"]
    assert m.pid != o.pid
    assert all(p.present and p.pagemap & PM_FILE for p in m.pages + o.pages)
    assert [p.pfn for p in m.pages] == [p.pfn for p in o.pages]
    assert len({p.pfn for p in m.pages}) == 8
    assert all(p.count == 2 for p in m.pages)
    # "exit" returns once the process's mm is gone: main is the only mapper left.
    assert [p.pfn for p in run.probes["m2"].pages] == [p.pfn for p in m.pages]
    assert all(p.count == 1 for p in run.probes["m2"].pages)


@pytest.fixture
def shm_path(tmp_path: Path) -> Iterator[Path]:
    """A file name on a small-page tmpfs (a disk filesystem may use large folios)."""
    shm = Path("/dev/shm")
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    if not any(m.split(" ")[1:3] == [str(shm), "tmpfs"] for m in mounts):
        pytest.skip("/dev/shm is not a tmpfs")
    path = shm / f"mmwork-test-{os.getpid()}-{tmp_path.name}"
    yield path
    path.unlink(missing_ok=True)


def test_tmpfs_file_populate_and_punch(
    mmwork: Path, tmp_path: Path, shm_path: Path, pfns: None
) -> None:
    path = shm_path
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 file d tmpfs {path} {64 * K} write",
            f"step 2 mmap main {ARENA} {64 * K} d 0 shared r",
            f"step 3 touch main {ARENA} {64 * K} read",
            f"step 4 probe main full {ARENA} {16 * K}",
            f"step 5 punch d 0 {4 * K}",
            f"step 6 probe main punched {ARENA} {16 * K}",
            f"step 7 touch main {ARENA} {4 * K} write",
        ],
    )
    assert_ran_ok(run)
    # populate "write" filled the file; the punched page reads back as zeroes.
    assert path.read_bytes() == b"\0" * (4 * K) + b"\x5a" * (60 * K)
    assert all(p.present and p.pagemap & PM_FILE for p in run.probes["full"].pages)
    punched = run.probes["punched"].pages
    assert not_present(punched[0])
    assert [p.pfn for p in punched[1:]] == [p.pfn for p in run.probes["full"].pages[1:]]
    # A write to a read-only mapping faults: reported, not fatal.
    assert run.step(7) == "err 14 EFAULT"


def test_mremap_moves_pages(mmwork: Path, tmp_path: Path, pfns: None) -> None:
    new = ARENA + 64 * M
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 mmap main {ARENA} {16 * K} anon 0 private rw",
            f"step 2 touch main {ARENA} {16 * K} write",
            f"step 3 probe main old {ARENA} {16 * K}",
            f"step 4 mremap main {ARENA} {16 * K} {new}",
            f"step 5 probe main moved {new} {16 * K}",
            f"step 6 probe main gone {ARENA} {16 * K}",
            f"step 7 madvise main {new} {8 * K} dontneed",
            f"step 8 probe main dropped {new} {16 * K}",
        ],
    )
    assert_ran_ok(run)
    old = [p.pfn for p in run.probes["old"].pages]
    assert [p.pfn for p in run.probes["moved"].pages] == old
    assert all(not_present(p) for p in run.probes["gone"].pages)
    assert run.probes["gone"].vmas == []
    dropped = run.probes["dropped"].pages
    assert all(not_present(p) for p in dropped[:2])
    assert [p.pfn for p in dropped[2:]] == old[2:]


def test_split(mmwork: Path, tmp_path: Path, pfns: None, thp: None) -> None:
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 mmap main {ARENA} {2 * M} anon 0 private rw",
            f"step 2 madvise main {ARENA} {2 * M} hugepage",
            f"step 3 touch main {ARENA} {2 * M} write",
            f"step 4 probe main before {ARENA} {2 * M}",
            f"step 5 split main {ARENA} {2 * M}",
            f"step 6 probe main after {ARENA} {2 * M}",
            "step 7 drop_caches",
        ],
    )
    assert_ran_ok(run)
    assert run.step(7) == "ok"
    if not SPLIT.exists():
        # Reported as a step error, the rest of the script still ran.
        assert run.step(5) == "err 2 ENOENT"
        pytest.skip(f"{SPLIT} is missing (debugfs not mounted): only the error path checked")
    if run.probes["before"].pages[0].order != 9:
        pytest.skip("the host gave no THP to split")
    if run.step(5) == "err 1 EPERM":
        pytest.skip(f"writing {SPLIT} is refused here (kernel lockdown?)")
    assert run.step(5) == "ok"
    before, after = run.probes["before"].pages, run.probes["after"].pages
    assert [p.pfn for p in after] == [p.pfn for p in before]
    assert all(p.order == 0 and p.head == p.pfn for p in after)


# --------------------------------------------------------------------------------------------
# Errors


def test_step_errors_do_not_stop_the_script(mmwork: Path, tmp_path: Path) -> None:
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 mmap main {ARENA} {8 * K} anon 0 private rw",
            f"step 2 munmap main {ARENA + 1} {4 * K}",
            f"step 3 mmap main {ARENA + 4 * K} {8 * K} anon 0 private rw",
            f"step 4 madvise main {ARENA} {8 * K} hugepage",
            f"step 5 file f memfd - {4 * K} none",
            f"step 6 mmap main {ARENA + M} {4 * K} f 0 shared rw",
            f"step 7 touch main {ARENA + 1} {4 * K} read",
            f"step 8 touch main {ARENA + M} {4 * K} write",
        ],
    )
    assert_ran_ok(run)
    assert run.steps[2] == ["munmap", "err", "22", "EINVAL"]
    assert run.steps[3] == ["mmap", "err", "17", "EEXIST"]
    assert run.step(4) == "ok"
    assert run.step(6) == "ok"
    assert run.step(7) == "err 22 EINVAL"
    assert run.step(8) == "ok"
    assert sorted(run.steps) == list(range(1, 9))


def test_touch_prot_none_is_efault(mmwork: Path, tmp_path: Path, pfns: None) -> None:
    run = run_script(
        mmwork,
        tmp_path,
        [
            f"step 1 mmap main {ARENA} {8 * K} anon 0 private none",
            f"step 2 touch main {ARENA} {8 * K} read",
            f"step 3 mprotect main {ARENA} {8 * K} rw",
            f"step 4 touch main {ARENA} {8 * K} write",
            f"step 5 mprotect main {ARENA} {8 * K} r",
            f"step 6 touch main {ARENA} {4 * K} write",
            f"step 7 touch main {ARENA + 64 * M} {4 * K} read",
            f"step 8 probe main p {ARENA} {8 * K}",
        ],
    )
    assert_ran_ok(run)
    assert run.steps[2] == ["touch", "err", "14", "EFAULT"]
    assert run.step(4) == "ok"
    assert run.step(6) == "err 14 EFAULT"
    assert run.step(7) == "err 14 EFAULT"  # unmapped
    assert all(p.present and p.count == 1 for p in run.probes["p"].pages)


def test_lost_process(mmwork: Path, tmp_path: Path) -> None:
    # Unmapping the whole user address space takes the worker's code and stack with it.
    everything = (1 << 47) - 2 * PG
    run = run_script(
        mmwork,
        tmp_path,
        [
            "step 1 spawn other",
            f"step 2 mmap other {ARENA} {4 * K} anon 0 private rw",
            f"step 3 munmap main {PG} {everything}",
            f"step 4 probe main p {ARENA} {4 * K}",
            f"step 5 touch other {ARENA} {4 * K} write",
            "step 6 exit main",
            "step 7 spawn main",
            f"step 8 mmap main {ARENA} {4 * K} anon 0 private rw",
        ],
    )
    assert run.rc == 1, run.lines
    errors = run.records("@ERROR")
    assert len(errors) == 1
    assert re.fullmatch(
        r"@ERROR step 3: process main \(pid \d+\) lost: killed by signal 11.*", errors[0]
    )
    assert run.lines.index(errors[0]) == run.lines.index("@STEP 3 munmap err 10 ECHILD") - 1
    assert run.step(4) == "err 3 ESRCH"
    assert run.step(5) == "ok"
    assert run.step(6) == "err 3 ESRCH"
    assert run.step(7) == "ok"
    assert run.step(8) == "ok"
    assert run.lines[-3].startswith("@VMSTAT end")
    assert run.lines[-2].startswith("@VMSTAT exit")
    assert run.lines[-1] == "@ENDSCENARIO t err"


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        (["step 1 frob main"], 2, "unknown op 'frob'"),
        (["step 1 mmap main 0 4096 anon 0 private"], 2, "mmap: expected 7 arguments, got 6"),
        (["step 1 touch main 0x1000 4096 read"], 2, "addr: not a decimal number"),
        (["step 1 touch ghost 0 4096 read"], 2, "unknown process 'ghost'"),
        (["step 1 exit main", "step 2 probe main p 0 4096"], 3, "unknown process 'main'"),
        (["step 1 spawn main"], 2, "process 'main' already exists"),
        (["step 1 mmap main 0 4096 nofile 0 private rw"], 2, "unknown file 'nofile'"),
        (["step 1 madvise main 0 4096 sideways"], 2, "advice: unknown value 'sideways'"),
        (["step 1  drop_caches"], 2, "empty token"),
        (["bogus"], 2, "unknown line 'bogus'"),
        (["end"], 3, "line after 'end'"),
    ],
)
def test_malformed_script(
    mmwork: Path, tmp_path: Path, body: list[str], line: int, what: str
) -> None:
    run = run_script(mmwork, tmp_path, ["step 0 drop_caches", *body])
    line += 1  # the step 0 line
    assert run.rc == 2
    assert run.lines[0] == "@SCENARIO t"
    assert run.lines[1].startswith(f"@ERROR line {line}: {what}"), run.lines
    assert run.lines[-1] == "@ENDSCENARIO t err"
    assert not run.steps, "nothing runs from a bad script"


def test_script_without_scenario_or_end(mmwork: Path, tmp_path: Path) -> None:
    script = tmp_path / "x.script"
    script.write_text("step 1 drop_caches\nend\n")
    run = run_raw(mmwork, script)
    assert run.rc == 2
    assert run.lines == [
        "@SCENARIO -",
        "@ERROR line 1: expected 'scenario <name>' first",
        "@ENDSCENARIO - err",
    ]
    script.write_text("scenario x\nstep 1 drop_caches\n")
    run = run_raw(mmwork, script)
    assert run.rc == 2
    assert run.lines[1:] == ["@ERROR line 3: missing 'end'", "@ENDSCENARIO x err"]


# --------------------------------------------------------------------------------------------
# Setup lines, output, ordering


def test_sysfs_setup_records(mmwork: Path, tmp_path: Path) -> None:
    knob = tmp_path / "knob"
    knob.write_text("")
    run = run_script(
        mmwork,
        tmp_path,
        [f"sysfs {knob} madvise", f"sysfs {tmp_path}/no/such/knob always", "step 1 drop_caches"],
    )
    assert_ran_ok(run)
    assert knob.read_text() == "madvise"
    assert run.records("@SETUP") == [
        f"@SETUP {knob} ok",
        f"@SETUP {tmp_path}/no/such/knob err 2 ENOENT",
    ]


def test_mount_tmpfs_huge(mmwork: Path, tmp_path: Path, pfns: None) -> None:
    mnt = tmp_path / "mnt" / "huge"
    try:
        run = run_script(
            mmwork,
            tmp_path,
            [
                f"mount {mnt} {16 * M} always",
                f"step 1 file h tmpfs {mnt}/h {4 * M} write",
                f"step 2 mmap main {ARENA} {4 * M} h 0 shared rw",
                f"step 3 touch main {ARENA} {4 * M} read",
                f"step 4 probe main h {ARENA} {4 * M}",
            ],
        )
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        mounted = [m for m in mounts if m.split(" ")[1] == str(mnt)]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    assert_ran_ok(run)
    assert run.records("@SETUP") == [f"@SETUP {mnt} ok"]
    assert len(mounted) == 1
    fs, options = mounted[0].split(" ")[2], mounted[0].split(" ")[3]
    assert fs == "tmpfs" and "size=16384k" in options and "huge=always" in options
    pages = run.probes["h"].pages
    assert all(p.present and p.pagemap & PM_FILE for p in pages)
    if pages[0].order != 9:
        pytest.skip("huge=always tmpfs gave no PMD-sized folio on this host")
    assert all(p.head == pages[0].pfn and p.order == 9 for p in pages[:512])
    vma = run.probes["h"].vmas[0]
    assert vma[4] >= 2048  # ShmemPmdMapped


def test_records_follow_script_order(mmwork: Path, tmp_path: Path, pfns: None) -> None:
    big = 16 * M  # 4096 @PAGE lines: several packets from the worker
    run = run_script(
        mmwork,
        tmp_path,
        [
            "step 1 spawn b",
            f"step 2 mmap main {ARENA} {big} anon 0 private rw",
            f"step 3 mmap b {ARENA} {4 * K} anon 0 private rw",
            f"step 4 touch main {ARENA} {big} write",
            f"step 5 probe main big {ARENA} {big}",
            f"step 6 probe b small {ARENA} {4 * K}",
            f"step 7 probe main big2 {ARENA} {big}",
            f"step 8 munmap b {ARENA} {4 * K}",
        ],
    )
    assert_ran_ok(run)
    tags = [(line.split(" ")[0], line.split(" ")[1]) for line in run.lines]
    order = [t for t in tags if t[0] in ("@STEP", "@PROBE", "@ENDPROBE")]
    assert order == [
        ("@STEP", "1"),
        ("@STEP", "2"),
        ("@STEP", "3"),
        ("@STEP", "4"),
        ("@PROBE", "big"),
        ("@ENDPROBE", "big"),
        ("@STEP", "5"),
        ("@PROBE", "small"),
        ("@ENDPROBE", "small"),
        ("@STEP", "6"),
        ("@PROBE", "big2"),
        ("@ENDPROBE", "big2"),
        ("@STEP", "7"),
        ("@STEP", "8"),
    ]
    assert len(run.probes["big"].pages) == len(run.probes["big2"].pages) == 4096
    assert all(p.present for p in run.probes["big"].pages)
    assert not run.probes["small"].pages[0].present
    assert run.probes["small"].pid != run.probes["big"].pid


def test_output_file_and_default(mmwork: Path, tmp_path: Path) -> None:
    script = tmp_path / "o.script"
    script.write_text("scenario o\nstep 1 drop_caches\nend\n")
    out = tmp_path / "records"
    r = subprocess.run(
        [str(mmwork), str(script), "-o", str(out)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout == ""
    lines = out.read_text().splitlines()
    assert lines[0] == "@SCENARIO o" and lines[-1] == "@ENDSCENARIO o ok"
    assert "@STEP 1 drop_caches ok" in lines
    if Path("/dev/ttyS1").exists():
        pytest.skip("/dev/ttyS1 exists here: the default output would go there")
    r = subprocess.run([str(mmwork), str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0

    def steady(records: list[str]) -> list[str]:
        return [x for x in records if not x.startswith("@VMSTAT")]

    assert steady(r.stdout.splitlines()) == steady(lines)
