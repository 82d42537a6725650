"""The workload language: YAML scenarios into frozen steps, validation, guest scripts.

The contract is guest-tests/WORKLOAD.md. Everything is checked at load time so that a
mistake names the file, the line and the key where the user wrote it, not a step that fails
in the guest minutes later: unknown names, maps used after they are gone, ranges outside
a mapping, overlaps that MAP_FIXED_NOREPLACE would refuse. Ranges are resolved here to
absolute addresses, following each map's current start across mremap moves, so the guest
and the model see the same numbers.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from harness import schema
from harness.errors import ConfigError
from harness.schema import Node, Where

ARENA = 0x100000000000
PAGE_SIZE = 4096
# x86-64 TASK_SIZE with 4-level paging: the last address user space can map, exclusive.
TASK_SIZE = 0x7FFFFFFFF000
ARENA_LIMIT = TASK_SIZE - ARENA

THP_ENABLED = ("always", "madvise", "never")
THP_DEFRAG = ("always", "defer", "defer+madvise", "madvise", "never")
SHMEM_ENABLED = ("always", "within_size", "advise", "never", "deny", "force")
MOUNT_HUGE = ("never", "always", "within_size", "advise")
PROTS = ("r", "rw", "none")
ADVICE = ("hugepage", "nohugepage", "dontneed", "cold", "pageout")
FILE_KINDS = ("memfd", "tmpfs")
POPULATE = ("none", "write", "fallocate")

SYSFS_THP = "/sys/kernel/mm/transparent_hugepage"
# mm/memory.c's knob (any kernel with DEBUG_FS) and the series' whole-folio mode (patch 0004).
FAULT_AROUND_BYTES = "/sys/kernel/debug/fault_around_bytes"
FAULT_AROUND_WHOLE_FOLIO = "/sys/kernel/debug/fault_around_whole_folio"
DEFAULT_FAULT_AROUND_BYTES = 65536
# fault_around_bytes_set() refuses more than one page table's worth (EINVAL).
MAX_FAULT_AROUND_BYTES = 512 * PAGE_SIZE

_SCENARIO_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# Script tokens that a file name must not shadow (`mmap ... anon|<file>`, `<path|->`).
_RESERVED_FILE_NAMES = ("anon", "-")


# --- the parsed form ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    path: str
    size: int
    huge: str
    where: Where


@dataclass(frozen=True)
class Setup:
    thp_enabled: str = "madvise"
    thp_defrag: str = "madvise"
    shmem_enabled: str = "never"
    mounts: tuple[Mount, ...] = ()
    # As written; the kernel rounds it down to a power of two (see effective_fault_around).
    fault_around_bytes: int = DEFAULT_FAULT_AROUND_BYTES
    fault_around_whole_folio: bool = False

    @property
    def fault_around_pages(self) -> int:
        """What fault_around_bytes_set() keeps, in pages: rounddown_pow_of_two, at least 1."""
        pages = max(self.fault_around_bytes // PAGE_SIZE, 1)
        return 1 << (pages.bit_length() - 1)

    def knobs(self) -> list[tuple[str, str]]:
        """Every file the guest writes before the first step, in order, with its value.

        Every knob is written in every scenario, defaults included, so a scenario never
        inherits what an earlier one in the same boot set.
        """
        return [
            (f"{SYSFS_THP}/enabled", self.thp_enabled),
            (f"{SYSFS_THP}/defrag", self.thp_defrag),
            (f"{SYSFS_THP}/shmem_enabled", self.shmem_enabled),
            (FAULT_AROUND_BYTES, str(self.fault_around_bytes)),
            (FAULT_AROUND_WHOLE_FOLIO, "1" if self.fault_around_whole_folio else "0"),
        ]

    def mount_for(self, path: str) -> Mount | None:
        """The declared mount a tmpfs path lives under, the deepest one if nested."""
        best: Mount | None = None
        for mount in self.mounts:
            if path.startswith(mount.path.rstrip("/") + "/") and (
                best is None or len(mount.path) > len(best.path)
            ):
                best = mount
        return best


@dataclass(frozen=True)
class Spawn:
    op: ClassVar[str] = "spawn"
    index: int
    where: Where
    proc: str


@dataclass(frozen=True)
class Fork:
    op: ClassVar[str] = "fork"
    index: int
    where: Where
    proc: str
    child: str


@dataclass(frozen=True)
class Exit:
    op: ClassVar[str] = "exit"
    index: int
    where: Where
    proc: str


@dataclass(frozen=True)
class FileCreate:
    op: ClassVar[str] = "file"
    index: int
    where: Where
    file: str
    kind: str  # memfd | tmpfs
    path: str | None  # tmpfs only
    size: int
    populate: str  # none | write | fallocate


@dataclass(frozen=True)
class Mmap:
    op: ClassVar[str] = "mmap"
    index: int
    where: Where
    proc: str
    map: str
    addr: int
    length: int
    file: str | None  # None: anonymous
    file_offset: int
    shared: bool
    prot: str


@dataclass(frozen=True)
class Munmap:
    op: ClassVar[str] = "munmap"
    index: int
    where: Where
    proc: str
    map: str
    addr: int
    length: int


@dataclass(frozen=True)
class Mremap:
    op: ClassVar[str] = "mremap"
    index: int
    where: Where
    proc: str
    map: str
    addr: int
    length: int
    new_addr: int
    new_map: str  # the name of the moved range afterwards: `map` for a whole move, else `as`


@dataclass(frozen=True)
class Mprotect:
    op: ClassVar[str] = "mprotect"
    index: int
    where: Where
    proc: str
    map: str
    addr: int
    length: int
    prot: str


@dataclass(frozen=True)
class Madvise:
    op: ClassVar[str] = "madvise"
    index: int
    where: Where
    proc: str
    map: str
    addr: int
    length: int
    advice: str


@dataclass(frozen=True)
class Touch:
    op: ClassVar[str] = "touch"
    index: int
    where: Where
    proc: str
    map: str
    addr: int
    length: int
    write: bool


@dataclass(frozen=True)
class Punch:
    op: ClassVar[str] = "punch"
    index: int
    where: Where
    file: str
    offset: int
    length: int


@dataclass(frozen=True)
class Split:
    op: ClassVar[str] = "split"
    index: int
    where: Where
    proc: str
    map: str
    addr: int
    length: int


@dataclass(frozen=True)
class DropCaches:
    op: ClassVar[str] = "drop_caches"
    index: int
    where: Where


@dataclass(frozen=True)
class Open:
    """A second open of an existing file: the same inode, a distinct struct file."""

    op: ClassVar[str] = "open"
    index: int
    where: Where
    file: str
    of: str


@dataclass(frozen=True)
class Recall:
    """Look again, by PFN, at the folio an earlier probe saw at probe.addr + offset."""

    op: ClassVar[str] = "recall"
    index: int
    where: Where
    label: str
    probe: str  # the earlier probe's label
    proc: str  # the process that probe ran in
    addr: int  # absolute address of the page, as the earlier probe saw it
    file: str | None  # the file mapped there at the probe (None: anonymous)
    file_index: int  # page-cache index of addr in that file (0 when anonymous)


@dataclass(frozen=True)
class Probe:
    op: ClassVar[str] = "probe"
    index: int
    where: Where
    proc: str
    label: str
    map: str
    addr: int
    length: int


Step = (
    Spawn
    | Fork
    | Exit
    | FileCreate
    | Mmap
    | Munmap
    | Mremap
    | Mprotect
    | Madvise
    | Touch
    | Punch
    | Split
    | DropCaches
    | Probe
    | Open
    | Recall
)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    setup: Setup
    steps: tuple[Step, ...]
    source: Where

    def probes(self) -> list[Probe]:
        return [s for s in self.steps if isinstance(s, Probe)]


# --- loading -----------------------------------------------------------------------------


def load_workload(path: Path) -> list[Scenario]:
    """A workload file: a top-level mapping holding `scenarios:` and nothing else."""
    root = schema.load(path)
    fields = root.mapping(("scenarios",))
    return parse_scenarios(schema.require(fields, "scenarios", root))


def parse_scenarios(node: Node) -> list[Scenario]:
    """A `scenarios:` list; names must be unique within it."""
    scenarios: list[Scenario] = []
    seen: dict[str, Scenario] = {}
    for item in node.items():
        scenario = _parse_scenario(item)
        if scenario.name in seen:
            raise item.error(
                f"scenario name '{scenario.name}' already used at {seen[scenario.name].source}"
            )
        seen[scenario.name] = scenario
        scenarios.append(scenario)
    return scenarios


def _parse_scenario(node: Node) -> Scenario:
    fields = node.mapping(("name", "description", "setup", "steps"))
    name_node = schema.require(fields, "name", node)
    name = name_node.as_str()
    if not _SCENARIO_NAME.match(name):
        raise name_node.error(f"scenario name {name!r} must match [a-z0-9][a-z0-9_.-]*")
    description = fields["description"].as_str() if "description" in fields else ""
    setup = _parse_setup(fields["setup"]) if "setup" in fields else Setup()
    steps_node = schema.require(fields, "steps", node)
    validator = _Validator(setup)
    steps = tuple(
        validator.step(index, item) for index, item in enumerate(steps_node.items(), start=1)
    )
    if not steps:
        raise steps_node.error("a scenario needs at least one step")
    return Scenario(name, description, setup, steps, node.where)


SETUP_KEYS = (
    "thp_enabled",
    "thp_defrag",
    "shmem_enabled",
    "mounts",
    "fault_around_bytes",
    "fault_around_whole_folio",
)


def _parse_setup(node: Node) -> Setup:
    if node.is_null():
        return Setup()
    fields = node.mapping(SETUP_KEYS)
    defaults = Setup()
    mounts: list[Mount] = []
    if "mounts" in fields:
        for item in fields["mounts"].items():
            mount = _parse_mount(item)
            for other in mounts:
                if other.path == mount.path:
                    raise item.error(f"mount path {mount.path!r} already declared at {other.where}")
            mounts.append(mount)
    return Setup(
        thp_enabled=_choice(fields, "thp_enabled", THP_ENABLED, defaults.thp_enabled),
        thp_defrag=_choice(fields, "thp_defrag", THP_DEFRAG, defaults.thp_defrag),
        shmem_enabled=_choice(fields, "shmem_enabled", SHMEM_ENABLED, defaults.shmem_enabled),
        mounts=tuple(mounts),
        fault_around_bytes=(
            _fault_around_bytes(fields["fault_around_bytes"])
            if "fault_around_bytes" in fields
            else defaults.fault_around_bytes
        ),
        fault_around_whole_folio=(
            fields["fault_around_whole_folio"].as_bool()
            if "fault_around_whole_folio" in fields
            else defaults.fault_around_whole_folio
        ),
    )


def parse_setup_override(node: Node) -> dict[str, object]:
    """A run config's `setup:`: knobs forced on every scenario of the run (mounts excluded,
    they belong to the scenario that creates files on them)."""
    allowed = tuple(k for k in SETUP_KEYS if k != "mounts")
    fields = node.mapping(allowed)
    parsed = _parse_setup(node)
    return {key: getattr(parsed, key) for key in fields}


def with_setup(scenario: Scenario, override: dict[str, object]) -> Scenario:
    """The scenario with a run config's forced setup knobs applied."""
    if not override:
        return scenario
    return replace(scenario, setup=replace(scenario.setup, **override))  # type: ignore[arg-type]


def _fault_around_bytes(node: Node) -> int:
    value = node.as_size()
    if value > MAX_FAULT_AROUND_BYTES:
        raise node.error(
            f"fault_around_bytes is at most 2M (one page table); the kernel refuses "
            f"{_human(value)} with EINVAL"
        )
    return value


def _parse_mount(node: Node) -> Mount:
    fields = node.mapping(("path", "size", "huge"))
    path_node = schema.require(fields, "path", node)
    path = _abs_path(path_node)
    size_node = schema.require(fields, "size", node)
    size = size_node.as_size(align=PAGE_SIZE)
    if size == 0:
        raise size_node.error("a tmpfs mount needs a positive size")
    huge = fields["huge"].as_choice(MOUNT_HUGE) if "huge" in fields else "never"
    return Mount(path, size, huge, node.where)


def _choice(fields: dict[str, Node], key: str, choices: tuple[str, ...], default: str) -> str:
    return fields[key].as_choice(choices) if key in fields else default


def _abs_path(node: Node) -> str:
    path = node.as_str()
    if not path.startswith("/") or any(c.isspace() for c in path) or "//" in path:
        raise node.error(f"expected an absolute path without spaces, got {path!r}")
    if path != "/" and path.endswith("/"):
        path = path.rstrip("/")
    return path


# --- validation state --------------------------------------------------------------------


@dataclass
class _MapState:
    """What the validator knows of a named mapping: its extent and the parts still mapped."""

    start: int  # absolute address of offset 0 (moves with a whole-map mremap)
    length: int
    live: list[tuple[int, int]]  # absolute [start, end) intervals still mapped, sorted
    defined: Where
    gone: Where | None = None  # where it became fully unmapped
    file: str | None = None  # the file mapped (None: anonymous)
    file_offset: int = 0  # the file offset mapped at `start`

    def holes_in(self, start: int, end: int) -> bool:
        covered = start
        for lo, hi in self.live:
            if hi <= covered:
                continue
            if lo > covered:
                break
            covered = max(covered, hi)
            if covered >= end:
                return False
        return covered < end

    def remove(self, start: int, end: int) -> None:
        kept: list[tuple[int, int]] = []
        for lo, hi in self.live:
            if hi <= start or lo >= end:
                kept.append((lo, hi))
                continue
            if lo < start:
                kept.append((lo, start))
            if hi > end:
                kept.append((end, hi))
        self.live = kept


@dataclass
class _ProcState:
    defined: Where | None  # None: `main`, which exists from the start
    maps: dict[str, _MapState] = field(default_factory=dict)
    exited: Where | None = None


@dataclass
class _FileState:
    kind: str
    path: str | None
    size: int
    defined: Where


@dataclass(frozen=True)
class _ProbeSeen:
    proc: str
    addr: int
    length: int
    file: str | None
    file_offset: int  # of addr, when file is set


_RANGE_KEYS = ("proc", "map", "offset", "length")
_OP_KEYS: dict[str, tuple[str, ...]] = {
    "spawn": ("proc",),
    "fork": ("proc", "child"),
    "exit": ("proc",),
    "file": ("file", "kind", "path", "size", "populate"),
    "mmap": ("proc", "map", "length", "at", "file", "file_offset", "shared", "prot"),
    "munmap": _RANGE_KEYS,
    "mremap": (*_RANGE_KEYS, "to", "as"),
    "mprotect": (*_RANGE_KEYS, "prot"),
    "madvise": (*_RANGE_KEYS, "advice"),
    "touch": (*_RANGE_KEYS, "write"),
    "punch": ("file", "offset", "length"),
    "split": _RANGE_KEYS,
    "drop_caches": (),
    "probe": ("label", *_RANGE_KEYS),
    "open": ("file", "of"),
    "recall": ("label", "probe", "offset"),
}
OPS = tuple(_OP_KEYS)


class _Validator:
    """Walks a scenario's steps in order, tracking processes, files and maps."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.procs: dict[str, _ProcState] = {"main": _ProcState(defined=None)}
        self.files: dict[str, _FileState] = {}
        self.labels: dict[str, Where] = {}
        self.probes: dict[str, _ProbeSeen] = {}

    # -- dispatch --

    def step(self, index: int, node: Node) -> Step:
        fields = node.mapping(OPS)
        if len(fields) != 1:
            raise node.error(
                f"a step is a mapping with exactly one operation key, got {len(fields)} "
                f"({', '.join(fields) or 'none'})"
            )
        ((op, args_node),) = fields.items()
        if args_node.is_null():
            args: dict[str, Node] = {}
        else:
            args = args_node.mapping(_OP_KEYS[op])
        method = getattr(self, f"_op_{op}")
        return method(index, args_node, args)  # type: ignore[no-any-return]

    # -- names --

    def _name(self, node: Node, what: str) -> str:
        name = node.as_str()
        if not _NAME.match(name):
            raise node.error(f"{what} name {name!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]*")
        return name

    def _live_proc(self, args: dict[str, Node], parent: Node, key: str = "proc") -> str:
        if key not in args:
            name, node = "main", parent
        else:
            node = args[key]
            name = self._name(node, "process")
        state = self.procs.get(name)
        if state is None:
            raise node.error(f"unknown process '{name}' (known: {', '.join(self.procs)})")
        if state.exited is not None:
            raise node.error(f"process '{name}' exited at {state.exited}")
        return name

    def _new_proc_name(self, node: Node) -> str:
        name = self._name(node, "process")
        if name in self.procs:
            old = self.procs[name].defined
            at = f" at {old}" if old else " (it exists from the start)"
            raise node.error(f"process name '{name}' already used{at}")
        return name

    def _live_map(self, proc: str, node: Node) -> tuple[str, _MapState]:
        name = self._name(node, "map")
        maps = self.procs[proc].maps
        state = maps.get(name)
        if state is None:
            known = ", ".join(n for n, m in maps.items() if m.gone is None) or "none"
            raise node.error(f"unknown map '{name}' in process '{proc}' (live maps: {known})")
        if state.gone is not None:
            raise node.error(f"map '{name}' in process '{proc}' was fully unmapped at {state.gone}")
        return name, state

    def _file(self, node: Node) -> tuple[str, _FileState]:
        name = self._name(node, "file")
        state = self.files.get(name)
        if state is None:
            raise node.error(f"unknown file '{name}' (known: {', '.join(self.files) or 'none'})")
        return name, state

    # -- ranges --

    def _range(self, args: dict[str, Node], parent: Node, state: _MapState) -> tuple[int, int]:
        """offset/length relative to the map's current start, as absolute (addr, length)."""
        offset = args["offset"].as_size(align=PAGE_SIZE) if "offset" in args else 0
        if offset >= state.length:
            node = args.get("offset", parent)
            raise node.error(
                f"offset {_human(offset)} is outside the mapping (length {_human(state.length)})"
            )
        if "length" in args:
            length = args["length"].as_size(align=PAGE_SIZE)
            if length == 0:
                raise args["length"].error("length must be positive")
            if offset + length > state.length:
                raise args["length"].error(
                    f"range {_human(offset)}+{_human(length)} is outside the mapping "
                    f"(length {_human(state.length)})"
                )
        else:
            length = state.length - offset
        return state.start + offset, length

    def _require_mapped(
        self, state: _MapState, addr: int, length: int, name: str, node: Node, why: str
    ) -> None:
        if state.holes_in(addr, addr + length):
            raise node.error(f"the range of map '{name}' includes unmapped pages; {why}")

    def _check_free(self, proc: str, addr: int, length: int, node: Node, what: str) -> None:
        if addr + length > ARENA + ARENA_LIMIT:
            raise node.error(f"{what} ends beyond the user address space")
        for name, state in self.procs[proc].maps.items():
            for lo, hi in state.live:
                if lo < addr + length and addr < hi:
                    raise node.error(
                        f"{what} [{_arena(addr)}, {_arena(addr + length)}) overlaps map "
                        f"'{name}' of process '{proc}' (defined at {state.defined})"
                    )

    # -- operations --

    def _op_spawn(self, index: int, node: Node, args: dict[str, Node]) -> Spawn:
        name = self._new_proc_name(schema.require(args, "proc", node))
        self.procs[name] = _ProcState(defined=node.where)
        return Spawn(index, node.where, name)

    def _op_fork(self, index: int, node: Node, args: dict[str, Node]) -> Fork:
        parent = self._live_proc(args, node)
        child = self._new_proc_name(schema.require(args, "child", node))
        self.procs[child] = _ProcState(
            defined=node.where, maps=copy.deepcopy(self.procs[parent].maps)
        )
        return Fork(index, node.where, parent, child)

    def _op_exit(self, index: int, node: Node, args: dict[str, Node]) -> Exit:
        proc = self._live_proc(args, node)
        self.procs[proc].exited = node.where
        return Exit(index, node.where, proc)

    def _op_file(self, index: int, node: Node, args: dict[str, Node]) -> FileCreate:
        name_node = schema.require(args, "file", node)
        name = self._name(name_node, "file")
        if name in _RESERVED_FILE_NAMES:
            raise name_node.error(f"'{name}' is reserved in guest scripts; pick another name")
        if name in self.files:
            raise name_node.error(f"file name '{name}' already used at {self.files[name].defined}")
        kind = schema.require(args, "kind", node).as_choice(FILE_KINDS)
        path: str | None = None
        if kind == "tmpfs":
            path_node = schema.require(args, "path", node)
            path = _abs_path(path_node)
            if self.setup.mount_for(path) is None:
                declared = ", ".join(m.path for m in self.setup.mounts) or "none"
                raise path_node.error(
                    f"tmpfs path {path!r} is not under a mount declared in setup.mounts "
                    f"(declared: {declared})"
                )
            for other_name, other in self.files.items():
                if other.path == path:
                    raise path_node.error(f"path {path!r} already used by file '{other_name}'")
        elif "path" in args:
            raise args["path"].error("a memfd has no path; 'path' is for kind: tmpfs")
        size_node = schema.require(args, "size", node)
        size = size_node.as_size(align=PAGE_SIZE)
        if size == 0:
            raise size_node.error("a file needs a positive size")
        if path is not None:
            mount = self.setup.mount_for(path)
            assert mount is not None
            if size > mount.size:
                raise size_node.error(
                    f"file size {_human(size)} exceeds the size of mount {mount.path} "
                    f"({_human(mount.size)})"
                )
        populate = args["populate"].as_choice(POPULATE) if "populate" in args else "none"
        self.files[name] = _FileState(kind, path, size, node.where)
        return FileCreate(index, node.where, name, kind, path, size, populate)

    def _op_open(self, index: int, node: Node, args: dict[str, Node]) -> Open:
        name_node = schema.require(args, "file", node)
        name = self._name(name_node, "file")
        if name in _RESERVED_FILE_NAMES:
            raise name_node.error(f"'{name}' is reserved in guest scripts; pick another name")
        if name in self.files:
            raise name_node.error(f"file name '{name}' already used at {self.files[name].defined}")
        of, state = self._file(schema.require(args, "of", node))
        self.files[name] = _FileState(state.kind, state.path, state.size, node.where)
        return Open(index, node.where, name, of)

    def _op_mmap(self, index: int, node: Node, args: dict[str, Node]) -> Mmap:
        proc = self._live_proc(args, node)
        name_node = schema.require(args, "map", node)
        name = self._name(name_node, "map")
        maps = self.procs[proc].maps
        if name in maps:
            raise name_node.error(
                f"map name '{name}' already used in process '{proc}' at {maps[name].defined}"
            )
        length_node = schema.require(args, "length", node)
        length = length_node.as_size(align=PAGE_SIZE)
        if length == 0:
            raise length_node.error("length must be positive")
        at_node = schema.require(args, "at", node)
        addr = ARENA + at_node.as_size(align=PAGE_SIZE)
        file: str | None = None
        file_offset = 0
        if "file" in args:
            file, fstate = self._file(args["file"])
            if "file_offset" in args:
                file_offset = args["file_offset"].as_size(align=PAGE_SIZE)
            if file_offset + length > fstate.size:
                raise (args.get("file_offset") or length_node).error(
                    f"the mapping ends beyond the end of file '{file}' "
                    f"({_human(file_offset)}+{_human(length)} > {_human(fstate.size)}); "
                    "touching there would SIGBUS"
                )
        elif "file_offset" in args:
            raise args["file_offset"].error("file_offset needs 'file'")
        shared = args["shared"].as_bool() if "shared" in args else False
        prot = args["prot"].as_choice(PROTS) if "prot" in args else "rw"
        self._check_free(proc, addr, length, at_node, "the mapping")
        maps[name] = _MapState(
            addr, length, [(addr, addr + length)], node.where, file=file, file_offset=file_offset
        )
        return Mmap(index, node.where, proc, name, addr, length, file, file_offset, shared, prot)

    def _ranged(self, node: Node, args: dict[str, Node]) -> tuple[str, str, _MapState, int, int]:
        proc = self._live_proc(args, node)
        name, state = self._live_map(proc, schema.require(args, "map", node))
        addr, length = self._range(args, node, state)
        return proc, name, state, addr, length

    def _op_munmap(self, index: int, node: Node, args: dict[str, Node]) -> Munmap:
        proc, name, state, addr, length = self._ranged(node, args)
        state.remove(addr, addr + length)
        if not state.live:
            state.gone = node.where
        return Munmap(index, node.where, proc, name, addr, length)

    def _op_mremap(self, index: int, node: Node, args: dict[str, Node]) -> Mremap:
        proc, name, state, addr, length = self._ranged(node, args)
        self._require_mapped(
            state, addr, length, name, node, "mremap needs one mapped range (6.1 returns EFAULT)"
        )
        to_node = schema.require(args, "to", node)
        new_addr = ARENA + to_node.as_size(align=PAGE_SIZE)
        if new_addr < addr + length and addr < new_addr + length:
            raise to_node.error("the destination overlaps the source range (6.1 returns EINVAL)")
        self._check_free(proc, new_addr, length, to_node, "the destination")
        whole = addr == state.start and length == state.length
        maps = self.procs[proc].maps
        if whole:
            if "as" in args:
                raise args["as"].error(
                    f"this mremap moves all of map '{name}', which keeps its name; drop 'as'"
                )
            state.start = new_addr
            state.live = [(new_addr, new_addr + length)]
            return Mremap(index, node.where, proc, name, addr, length, new_addr, name)
        if "as" not in args:
            raise node.error(
                f"a partial mremap of map '{name}' needs 'as': the name of the moved range"
            )
        new_name = self._name(args["as"], "map")
        if new_name in maps:
            raise args["as"].error(
                f"map name '{new_name}' already used in process '{proc}' at "
                f"{maps[new_name].defined}"
            )
        state.remove(addr, addr + length)
        if not state.live:
            state.gone = node.where
        maps[new_name] = _MapState(
            new_addr,
            length,
            [(new_addr, new_addr + length)],
            node.where,
            file=state.file,
            file_offset=state.file_offset + (addr - state.start),
        )
        return Mremap(index, node.where, proc, name, addr, length, new_addr, new_name)

    def _op_mprotect(self, index: int, node: Node, args: dict[str, Node]) -> Mprotect:
        proc, name, state, addr, length = self._ranged(node, args)
        self._require_mapped(state, addr, length, name, node, "mprotect there returns ENOMEM")
        prot = schema.require(args, "prot", node).as_choice(PROTS)
        return Mprotect(index, node.where, proc, name, addr, length, prot)

    def _op_madvise(self, index: int, node: Node, args: dict[str, Node]) -> Madvise:
        proc, name, state, addr, length = self._ranged(node, args)
        self._require_mapped(state, addr, length, name, node, "madvise there returns ENOMEM")
        advice = schema.require(args, "advice", node).as_choice(ADVICE)
        return Madvise(index, node.where, proc, name, addr, length, advice)

    def _op_touch(self, index: int, node: Node, args: dict[str, Node]) -> Touch:
        proc, name, state, addr, length = self._ranged(node, args)
        self._require_mapped(state, addr, length, name, node, "touching there would fault (EFAULT)")
        write = args["write"].as_bool() if "write" in args else False
        return Touch(index, node.where, proc, name, addr, length, write)

    def _op_punch(self, index: int, node: Node, args: dict[str, Node]) -> Punch:
        name, state = self._file(schema.require(args, "file", node))
        offset = args["offset"].as_size(align=PAGE_SIZE) if "offset" in args else 0
        length_node = schema.require(args, "length", node)
        length = length_node.as_size(align=PAGE_SIZE)
        if length == 0:
            raise length_node.error("length must be positive")
        if offset + length > state.size:
            raise length_node.error(
                f"hole {_human(offset)}+{_human(length)} is beyond the end of file '{name}' "
                f"({_human(state.size)})"
            )
        return Punch(index, node.where, name, offset, length)

    def _op_split(self, index: int, node: Node, args: dict[str, Node]) -> Split:
        proc, name, _state, addr, length = self._ranged(node, args)
        return Split(index, node.where, proc, name, addr, length)

    def _op_drop_caches(self, index: int, node: Node, args: dict[str, Node]) -> DropCaches:
        return DropCaches(index, node.where)

    def _op_probe(self, index: int, node: Node, args: dict[str, Node]) -> Probe:
        label_node = schema.require(args, "label", node)
        label = self._name(label_node, "probe label")
        if label in self.labels:
            raise label_node.error(f"probe label '{label}' already used at {self.labels[label]}")
        proc, name, state, addr, length = self._ranged(node, args)
        self.labels[label] = node.where
        self.probes[label] = _ProbeSeen(
            proc, addr, length, state.file, state.file_offset + (addr - state.start)
        )
        return Probe(index, node.where, proc, label, name, addr, length)

    def _op_recall(self, index: int, node: Node, args: dict[str, Node]) -> Recall:
        label_node = schema.require(args, "label", node)
        label = self._name(label_node, "recall label")
        if label in self.labels:
            raise label_node.error(f"label '{label}' already used at {self.labels[label]}")
        probe_node = schema.require(args, "probe", node)
        seen = self.probes.get(self._name(probe_node, "probe label"))
        if seen is None:
            known = ", ".join(self.probes) or "none yet"
            raise probe_node.error(
                f"recall needs the label of an earlier probe (earlier probes: {known})"
            )
        offset = args["offset"].as_size(align=PAGE_SIZE) if "offset" in args else 0
        if offset >= seen.length:
            raise args["offset"].error(
                f"offset {_human(offset)} is outside that probe's range "
                f"(length {_human(seen.length)})"
            )
        self.labels[label] = node.where
        file_index = (seen.file_offset + offset) // PAGE_SIZE if seen.file else 0
        return Recall(
            index,
            node.where,
            label,
            probe_node.as_str(),
            seen.proc,
            seen.addr + offset,
            seen.file,
            file_index,
        )


# --- the guest script --------------------------------------------------------------------


def guest_script(scenario: Scenario) -> str:
    """The line script mmwork runs (WORKLOAD.md "Guest script"); every knob is always set."""
    setup = scenario.setup
    lines = [f"scenario {scenario.name}"]
    lines += [f"sysfs {path} {value}" for path, value in setup.knobs()]
    lines += [f"mount {m.path} {m.size} {m.huge}" for m in setup.mounts]
    lines += [f"step {step.index} {_script_args(step)}" for step in scenario.steps]
    lines.append("end")
    return "\n".join(lines) + "\n"


def _script_args(step: Step) -> str:
    match step:
        case Spawn(proc=proc) | Exit(proc=proc):
            return f"{step.op} {proc}"
        case Fork(proc=proc, child=child):
            return f"fork {proc} {child}"
        case FileCreate():
            return f"file {step.file} {step.kind} {step.path or '-'} {step.size} {step.populate}"
        case Mmap():
            return (
                f"mmap {step.proc} {step.addr} {step.length} {step.file or 'anon'} "
                f"{step.file_offset} {'shared' if step.shared else 'private'} {step.prot}"
            )
        case Munmap() | Split():
            return f"{step.op} {step.proc} {step.addr} {step.length}"
        case Mremap():
            return f"mremap {step.proc} {step.addr} {step.length} {step.new_addr}"
        case Mprotect():
            return f"mprotect {step.proc} {step.addr} {step.length} {step.prot}"
        case Madvise():
            return f"madvise {step.proc} {step.addr} {step.length} {step.advice}"
        case Touch():
            return (
                f"touch {step.proc} {step.addr} {step.length} {'write' if step.write else 'read'}"
            )
        case Punch():
            return f"punch {step.file} {step.offset} {step.length}"
        case DropCaches():
            return "drop_caches"
        case Probe():
            return f"probe {step.proc} {step.label} {step.addr} {step.length}"
        case Open():
            return f"open {step.file} {step.of}"
        case Recall():
            return (
                f"recall {step.label} {step.probe} {step.addr} {step.file or 'anon'} "
                f"{step.file_index}"
            )
    raise ConfigError(f"{step.where}: cannot script step {step!r}")  # pragma: no cover


def _human(size: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)


def _arena(addr: int) -> str:
    return f"arena+{_human(addr - ARENA)}" if addr >= ARENA else hex(addr)
