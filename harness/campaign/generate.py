"""Generated workloads: a seeded walk over the workload language, biased toward mapcounts.

Workload `i` of seed `s` comes from its own random.Random seeded with (GENERATOR_VERSION,
s, i), so the same seed and version give the same workloads whatever the count or batch.
The walk keeps just enough state (processes, files, each map's start and live ranges) to
emit only valid steps, and every workload is parsed by harness/workload.py before it is
used: a generator bug stops the campaign at once with the parser's file:line message.

Bias, because that is where mapcounts are decided: 2 MiB-aligned and misaligned-by-a-page
mappings, ranges that straddle a page-table boundary or cover part of a folio, folios shared
along fork chains, by shared file mappings and by independent processes mapping one tmpfs
file, private file mappings written to (COW). Sizes stay small (a few MiB per map, a few
maps) so one workload runs in well under a second under TCG and never runs the guest short
of memory (a THP allocation that falls back is environment, not a finding).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness import workload
from harness.errors import HarnessError
from harness.formats.workload_yaml import Doc, dump_docs, parse_docs, size_text
from harness.workload import ARENA, PAGE_SIZE, Scenario

# Bump when a change makes the same seed produce different workloads.
GENERATOR_VERSION = 3

PAGE = PAGE_SIZE
MIB = 1 << 20
PMD = 2 * MIB
ARENA_SLOTS = 24  # maps start in the first 48 MiB of the arena
MAX_MAPPED = 20 * MIB  # bytes mapped by one process at once
MAX_PROCS = 4
MAX_FILES = 3
MOUNT = "/mnt/fz"
MOUNT_SIZE = 32 * MIB

# Operation weights once the first maps exist.
OP_WEIGHTS: dict[str, int] = {
    "mmap": 6, "touch": 14, "munmap": 6, "mremap": 5, "mprotect": 5, "madvise": 8,
    "fork": 4, "spawn": 2, "exit": 2, "file": 3, "open": 2, "punch": 3, "split": 3,
    "drop_caches": 2, "probe": 6, "recall": 3,
}  # fmt: skip
ADVICE_WEIGHTS = {"hugepage": 4, "nohugepage": 1, "dontneed": 4, "cold": 2, "pageout": 2}


class GeneratorError(HarnessError):
    """The generator emitted a workload the language refuses: a bug in the generator."""


@dataclass
class _Map:
    start: int  # arena offset of the map's current start (ranges are relative to it)
    length: int
    live: list[tuple[int, int]]  # arena offsets still mapped
    kind: str  # anon | shmem | private-file


@dataclass
class _Proc:
    maps: dict[str, _Map] = field(default_factory=dict)

    def mapped(self) -> int:
        return sum(hi - lo for m in self.maps.values() for lo, hi in m.live)

    def overlaps(self, lo: int, hi: int) -> bool:
        return any(a < hi and lo < b for m in self.maps.values() for a, b in m.live)


@dataclass
class _File:
    size: int


class _Walk:
    """One workload's steps, built by a random walk that keeps every step valid."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.procs: dict[str, _Proc] = {"main": _Proc()}
        self.files: dict[str, _File] = {}
        self.steps: list[Doc] = []
        self.names = Counter[str]()
        self.mounted = False
        self.probes: dict[str, int] = {}  # label -> pages in its range (for recall)

    def fresh(self, prefix: str) -> str:
        self.names[prefix] += 1
        return f"{prefix}{self.names[prefix]}"

    def emit(self, op: str, args: Doc) -> None:
        self.steps.append({op: args})

    # -- choices --

    def pick_proc(self, with_maps: bool = False) -> str | None:
        names = [n for n, p in self.procs.items() if p.maps or not with_maps]
        return self.rng.choice(names) if names else None

    def pick_map(self, proc: str) -> tuple[str, _Map] | None:
        maps = list(self.procs[proc].maps.items())
        return self.rng.choice(maps) if maps else None

    def place(self, proc: str, length: int, avoid: tuple[int, int] | None = None) -> int | None:
        """An arena offset where [at, at+length) is free in proc: aligned, or off by a page."""
        for _ in range(12):
            base = self.rng.randrange(ARENA_SLOTS) * PMD
            shift = self.rng.choices(
                (0, PAGE, PMD - PAGE, MIB, self.rng.randrange(1, 512) * PAGE),
                weights=(6, 3, 1, 1, 1),
            )[0]
            at = base + shift
            if self.procs[proc].overlaps(at, at + length):
                continue
            if avoid is not None and at < avoid[1] and avoid[0] < at + length:
                continue
            return at
        return None

    def length(self) -> int:
        return self.rng.choices(
            (PMD, 2 * PMD, MIB, PMD + PAGE, PMD - PAGE, 3 * MIB, PMD + 16 * PAGE,
             self.rng.randrange(1, 17) * PAGE),
            weights=(8, 4, 2, 2, 1, 2, 1, 2),
        )[0]  # fmt: skip

    def subrange(self, lo: int, hi: int) -> tuple[int, int]:
        """Part of [lo, hi): whole, a half, a page, across a 2 MiB boundary, a 2 MiB block."""
        npages = (hi - lo) // PAGE
        inner = [b for b in range((lo // PMD + 1) * PMD, hi, PMD)]
        shape = self.rng.choices(
            ("whole", "half", "page", "straddle", "block", "random"), weights=(5, 3, 2, 4, 2, 3)
        )[0]
        if shape == "half" and npages >= 2:
            mid = lo + npages // 2 * PAGE
            return (lo, mid) if self.rng.random() < 0.5 else (mid, hi)
        if shape == "page":
            at = lo + self.rng.randrange(npages) * PAGE
            return at, at + PAGE
        if shape == "straddle" and inner:
            boundary = self.rng.choice(inner)
            before = self.rng.choice((1, 2, 16, 256, 511)) * PAGE
            after = self.rng.choice((1, 2, 16, 256, 511)) * PAGE
            return max(lo, boundary - before), min(hi, boundary + after)
        if shape == "block":
            first = (lo + PMD - 1) // PMD * PMD
            if first + PMD <= hi:
                return first, first + PMD
        if shape == "random" and npages >= 2:
            a, b = sorted(self.rng.sample(range(npages + 1), 2))
            return lo + a * PAGE, lo + b * PAGE
        return lo, hi

    def live_range(self, m: _Map) -> tuple[int, int]:
        lo, hi = self.rng.choice(m.live)
        return self.subrange(lo, hi)

    def ranged(self, proc: str, name: str, m: _Map, lo: int, hi: int, **extra: object) -> Doc:
        args: Doc = {} if proc == "main" else {"proc": proc}
        args["map"] = name
        if lo != m.start:
            args["offset"] = size_text(lo - m.start)
        args["length"] = size_text(hi - lo)
        args.update(extra)
        return args

    @staticmethod
    def remove(m: _Map, lo: int, hi: int) -> None:
        kept = []
        for a, b in m.live:
            if b <= lo or a >= hi:
                kept.append((a, b))
                continue
            if a < lo:
                kept.append((a, lo))
            if hi < b:
                kept.append((hi, b))
        m.live = kept

    # -- operations --

    def op_file(self) -> bool:
        if len(self.files) >= MAX_FILES:
            return False
        name = self.fresh("f")
        size = self.rng.choice((PMD, 2 * PMD, PMD + PAGE, MIB, 3 * MIB, 16 * PAGE))
        args: Doc = {"file": name}
        if self.mounted and self.rng.random() < 0.6:
            args.update(kind="tmpfs", path=f"{MOUNT}/{name}")
        else:
            args["kind"] = "memfd"
        args["size"] = size_text(size)
        populate = self.rng.choices(("none", "write", "fallocate"), weights=(3, 2, 1))[0]
        if populate != "none":
            args["populate"] = populate
        self.files[name] = _File(size)
        self.emit("file", args)
        return True

    def op_open(self) -> bool:
        """A second struct file of an existing file: the same page cache, VMAs that never
        merge with the first open's."""
        if not self.files or len(self.files) >= MAX_FILES + 2:
            return False
        of = self.rng.choice(sorted(self.files))
        name = self.fresh("o")
        self.files[name] = _File(self.files[of].size)
        self.emit("open", {"file": name, "of": of})
        # Interesting only when both opens map the file.
        if self.rng.random() < 0.7:
            self.op_mmap(self.pick_proc(), of_file=True, file=name)
        return True

    def op_mmap(self, proc: str | None = None, of_file: bool = False,
                file: str | None = None) -> bool:  # fmt: skip
        proc = proc or self.pick_proc()
        if proc is None or self.procs[proc].mapped() > MAX_MAPPED:
            return False
        use_file = bool(self.files) and (of_file or self.rng.random() < 0.45)
        shared = self.rng.random() < (0.6 if use_file else 0.15)
        length = self.length()
        file_offset = 0
        fname = None
        if use_file:
            fname = file or self.rng.choice(sorted(self.files))
            fsize = self.files[fname].size
            file_offset = self.rng.choice((0, 0, PMD, PAGE, MIB)) if fsize > PAGE else 0
            if file_offset >= fsize:
                file_offset = 0
            room = fsize - file_offset
            length = min(length, room) if self.rng.random() < 0.5 else room
        at = self.place(proc, length)
        if at is None:
            return False
        name = self.fresh("m")
        args: Doc = {} if proc == "main" else {"proc": proc}
        args.update(map=name, length=size_text(length), at=size_text(at))
        if fname is not None:
            args["file"] = fname
            if file_offset:
                args["file_offset"] = size_text(file_offset)
        if shared:
            args["shared"] = True
        prot = self.rng.choices(("rw", "r", "none"), weights=(10, 2, 1))[0]
        if prot != "rw":
            args["prot"] = prot
        kind = "shmem" if shared else ("private-file" if fname else "anon")
        self.procs[proc].maps[name] = _Map(at, length, [(at, at + length)], kind)
        self.emit("mmap", args)
        m = self.procs[proc].maps[name]
        if self.rng.random() < 0.5:
            self.emit("madvise", self.ranged(proc, name, m, at, at + length, advice="hugepage"))
        if kind == "private-file" and prot == "rw" and self.rng.random() < 0.5:
            # Copy-on-write of file pages: read them in (fault-around maps a run of the
            # folio), then write some, each write replacing a file page by an anon copy.
            lo, hi = self.subrange(at, at + length)
            self.emit("touch", self.ranged(proc, name, m, lo, hi))
            lo, hi = self.subrange(lo, hi)
            self.emit("touch", self.ranged(proc, name, m, lo, hi, write=True))
        return True

    def _map_op(self) -> tuple[str, str, _Map] | None:
        proc = self.pick_proc(with_maps=True)
        if proc is None:
            return None
        picked = self.pick_map(proc)
        if picked is None:
            return None
        return proc, picked[0], picked[1]

    def op_touch(self) -> bool:
        if (found := self._map_op()) is None:
            return False
        proc, name, m = found
        lo, hi = self.live_range(m)
        write = self.rng.random() < 0.6
        self.emit("touch", self.ranged(proc, name, m, lo, hi, **({"write": True} if write else {})))
        return True

    def op_munmap(self) -> bool:
        if (found := self._map_op()) is None:
            return False
        proc, name, m = found
        lo, hi = self.live_range(m)
        self.emit("munmap", self.ranged(proc, name, m, lo, hi))
        self.remove(m, lo, hi)
        if not m.live:
            del self.procs[proc].maps[name]
        return True

    def op_mremap(self) -> bool:
        if (found := self._map_op()) is None:
            return False
        proc, name, m = found
        whole = len(m.live) == 1 and m.live[0] == (m.start, m.start + m.length)
        if whole and self.rng.random() < 0.4:
            lo, hi = m.start, m.start + m.length
        else:
            lo, hi = self.live_range(m)
        to = self.place(proc, hi - lo, avoid=(lo, hi))
        if to is None:
            return False
        if (lo, hi) == (m.start, m.start + m.length):
            self.emit("mremap", self.ranged(proc, name, m, lo, hi, to=size_text(to)))
            m.start, m.live = to, [(to, to + m.length)]
            return True
        new = self.fresh("m")
        self.emit("mremap", self.ranged(proc, name, m, lo, hi, to=size_text(to), **{"as": new}))
        self.remove(m, lo, hi)
        if not m.live:
            del self.procs[proc].maps[name]
        self.procs[proc].maps[new] = _Map(to, hi - lo, [(to, to + hi - lo)], m.kind)
        return True

    def op_mprotect(self) -> bool:
        if (found := self._map_op()) is None:
            return False
        proc, name, m = found
        lo, hi = self.live_range(m)
        prot = self.rng.choices(("r", "rw", "none"), weights=(3, 3, 1))[0]
        self.emit("mprotect", self.ranged(proc, name, m, lo, hi, prot=prot))
        return True

    def op_madvise(self) -> bool:
        if (found := self._map_op()) is None:
            return False
        proc, name, m = found
        lo, hi = self.live_range(m)
        advice = self.rng.choices(list(ADVICE_WEIGHTS), weights=list(ADVICE_WEIGHTS.values()))[0]
        self.emit("madvise", self.ranged(proc, name, m, lo, hi, advice=advice))
        return True

    def op_split(self) -> bool:
        if (found := self._map_op()) is None:
            return False
        proc, name, m = found
        lo, hi = self.live_range(m)
        self.emit("split", self.ranged(proc, name, m, lo, hi))
        return True

    def op_probe(self, proc: str | None = None, name: str | None = None) -> bool:
        if proc is None or name is None:
            if (found := self._map_op()) is None:
                return False
            proc, name, m = found
            whole = (m.start, m.start + m.length)
            lo, hi = self.live_range(m) if self.rng.random() < 0.5 else whole
        else:
            m = self.procs[proc].maps[name]
            lo, hi = m.start, m.start + m.length
        label = self.fresh("p")
        args = self.ranged(proc, name, m, lo, hi)
        self.emit("probe", {"label": label, **args})
        self.probes[label] = (hi - lo) // PAGE
        return True

    def op_recall(self) -> bool:
        """Look again at a page an earlier probe saw: after an unmap, a split, a punch."""
        if not self.probes:
            return False
        probe = self.rng.choice(sorted(self.probes))
        npages = self.probes[probe]
        page = self.rng.choice((0, 0, npages - 1, self.rng.randrange(npages)))
        args: Doc = {"label": self.fresh("r"), "probe": probe}
        if page:
            args["offset"] = size_text(page * PAGE)
        self.emit("recall", args)
        return True

    def op_fork(self) -> bool:
        if len(self.procs) >= MAX_PROCS:
            return False
        parent = self.pick_proc(with_maps=True) or "main"
        child = self.fresh("c")
        self.procs[child] = _Proc(
            {n: _Map(m.start, m.length, list(m.live), m.kind)
             for n, m in self.procs[parent].maps.items()}
        )  # fmt: skip
        self.emit("fork", {**({} if parent == "main" else {"proc": parent}), "child": child})
        return True

    def op_spawn(self) -> bool:
        if len(self.procs) >= MAX_PROCS:
            return False
        name = self.fresh("s")
        self.procs[name] = _Proc()
        self.emit("spawn", {"proc": name})
        # An independent process is interesting when it maps what another one maps.
        if self.files and self.rng.random() < 0.8:
            self.op_mmap(name, of_file=True)
        return True

    def op_exit(self) -> bool:
        others = [n for n in self.procs if n != "main"]
        if not others:
            return False
        name = self.rng.choice(others)
        del self.procs[name]
        self.emit("exit", {"proc": name})
        return True

    def op_punch(self) -> bool:
        if not self.files:
            return False
        name = self.rng.choice(sorted(self.files))
        size = self.files[name].size
        lo, hi = self.subrange(0, size)
        self.emit("punch", {"file": name, "offset": size_text(lo), "length": size_text(hi - lo)})
        return True

    def op_drop_caches(self) -> bool:
        self.emit("drop_caches", {})
        return True


def _setup(rng: random.Random, whole_folio: bool) -> Doc:
    setup: Doc = {
        "thp_enabled": rng.choices(workload.THP_ENABLED, weights=(3, 4, 1))[0],
        "thp_defrag": rng.choice(workload.THP_DEFRAG),
        "shmem_enabled": rng.choices(workload.SHMEM_ENABLED, weights=(3, 2, 2, 2, 1, 1))[0],
    }
    # Fault-around decides how many PTEs a file fault maps: off (4K), small, the default,
    # one whole page table, a size the kernel rounds down to a power of two.
    around = rng.choices((4096, 16384, 65536, 262144, PMD, 12 * PAGE), weights=(2, 2, 6, 2, 2, 1))[
        0
    ]
    if around != workload.DEFAULT_FAULT_AROUND_BYTES:
        setup["fault_around_bytes"] = size_text(around)
    # The series' whole-folio mode (patch 0004); drawn on every kernel so that a seed gives
    # the same workloads, kept only where the kernel has the knob.
    if rng.random() < 0.3 and whole_folio:
        setup["fault_around_whole_folio"] = True
    if rng.random() < 0.6:
        huge = rng.choices(workload.MOUNT_HUGE, weights=(1, 3, 2, 2))[0]
        setup["mounts"] = [{"path": MOUNT, "size": size_text(MOUNT_SIZE), "huge": huge}]
    return setup


def workload_name(seed: int, index: int) -> str:
    return f"fz{seed}-{index}"


def generate_doc(seed: int, index: int, whole_folio: bool = False) -> Doc:
    """The plain-data form of workload `index` of `seed` (not yet validated).

    whole_folio: the kernel has the series' fault_around_whole_folio knob.
    """
    rng = random.Random(f"folio-harness-fuzz-v{GENERATOR_VERSION}-{seed}-{index}")
    setup = _setup(rng, whole_folio)
    walk = _Walk(rng)
    walk.mounted = "mounts" in setup
    for _ in range(rng.choice((0, 1, 1, 2))):
        walk.op_file()
    for _ in range(rng.choice((1, 1, 2, 3))):
        walk.op_mmap("main")
    nsteps = rng.randrange(3, 16)
    ops, weights = list(OP_WEIGHTS), list(OP_WEIGHTS.values())
    attempts = 0
    while len(walk.steps) < nsteps + 3 and attempts < 60:
        attempts += 1
        op = rng.choices(ops, weights=weights)[0]
        getattr(walk, f"op_{op}")()
        if op != "probe" and rng.random() < 0.12:
            walk.op_probe()
    # Probe at the end: a few live maps, whole (a new one if everything was unmapped).
    ends = [(p, n) for p, proc in walk.procs.items() for n in proc.maps]
    if not ends and walk.op_mmap("main"):
        walk.op_touch()
        ends = [("main", n) for n in walk.procs["main"].maps]
    rng.shuffle(ends)
    for proc, name in ends[:3]:
        walk.op_probe(proc, name)
    return {
        "name": workload_name(seed, index),
        "description": f"generated: seed {seed}, workload {index}, generator v{GENERATOR_VERSION}",
        "setup": setup,
        "steps": walk.steps,
    }


def generate(seed: int, index: int, whole_folio: bool = False) -> tuple[Doc, Scenario]:
    """Workload `index` of `seed`, parsed by the language's own parser."""
    doc = generate_doc(seed, index, whole_folio)
    return doc, validate(doc)


def validate(doc: Doc) -> Scenario:
    origin = Path(f"<generated {doc['name']}>")
    try:
        return parse_docs([doc], origin)[0]
    except HarnessError as exc:
        raise GeneratorError(
            f"the generator made an invalid workload ({exc}); the workload:\n" + dump_docs([doc])
        ) from exc


# --- coverage --------------------------------------------------------------------------------

KINDS = ("anon", "shmem", "private-file")


def coverage(scenario: Scenario) -> Counter[tuple[str, str, str]]:
    """(op, folio kind, aligned|misaligned) for every step that works on a map.

    The kind is the mapping's: anon (private anonymous), shmem (any shared mapping, of a
    file or anonymous) or private-file; aligned means the step's range starts on a 2 MiB
    boundary. Steps on no map count as (op, '-', '-').
    """
    kinds: dict[tuple[str, str], str] = {}
    out: Counter[tuple[str, str, str]] = Counter()
    for step in scenario.steps:
        if isinstance(step, workload.Fork):
            for (proc, name), kind in list(kinds.items()):
                if proc == step.proc:
                    kinds[(step.child, name)] = kind
        if isinstance(step, workload.Mmap):
            kind = "shmem" if step.shared else ("private-file" if step.file else "anon")
            kinds[(step.proc, step.map)] = kind
        if isinstance(step, workload.Mremap):
            kinds[(step.proc, step.new_map)] = kinds[(step.proc, step.map)]
        name = getattr(step, "map", None)
        if name is None:
            out[(step.op, "-", "-")] += 1
            continue
        addr = step.addr  # type: ignore[union-attr]
        aligned = "aligned" if (addr - ARENA) % PMD == 0 else "misaligned"
        out[(step.op, kinds[(step.proc, name)], aligned)] += 1  # type: ignore[union-attr]
    return out
