"""The run config: which kernel, which patches and kconfig, which machine, which workloads.

Relative paths in a run config resolve against the directory holding that config, so a run
behaves the same whatever the current directory is.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import schema, selftests, workload
from harness.errors import ConfigError

DEFAULT_SOURCE = Path("/usr/src/linux-source-6.1.tar.xz")
BASE_CONFIGS = ("tinyconfig", "defconfig")
ACCELS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class KernelSpec:
    source: Path | str  # a tarball, a directory, or a git URL
    ref: str | None  # for a git source: the commit, tag or branch to build
    series: Path | None  # None: the baseline, no patches
    base_config: str
    fragments: tuple[Path, ...]
    cmdline: str


@dataclass(frozen=True)
class MachineSpec:
    accel: str = "auto"
    memory_mb: int = 1024
    cpus: int = 2
    boot_timeout: float = 120.0
    step_timeout: float = 300.0


@dataclass(frozen=True)
class RunConfig:
    path: Path
    kernel: KernelSpec
    machine: MachineSpec
    scenarios: tuple[workload.Scenario, ...]
    workload_files: tuple[Path, ...] = field(default=())
    selftests: selftests.SelftestPlan | None = None  # run the kernel's vm selftests instead
    compare: tuple[tuple[str, KernelSpec], ...] = ()  # (label, kernel): baseline, patched
    # Setup knobs forced on every scenario (the run config's `setup:`), as parsed.
    setup_override: tuple[tuple[str, object], ...] = ()


def _path(node: schema.Node, base: Path, must_exist: bool = True, what: str = "file") -> Path:
    raw = node.as_str()
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (base / path).resolve()
    if must_exist and not path.exists():
        raise node.error(f"{what} {raw!r} not found (looked for {path})")
    return path


def _kernel(node: schema.Node | None, base: Path, default: KernelSpec | None = None) -> KernelSpec:
    """The kernel section; with `default`, a partial one overriding it (compare sides)."""
    default = default or KernelSpec(DEFAULT_SOURCE, None, None, "tinyconfig", (), "")
    if node is None:
        return default
    f = node.mapping(("source", "ref", "series", "base_config", "fragments", "cmdline"))
    source: Path | str = default.source
    if "source" in f:
        raw = f["source"].as_str()
        if "://" in raw or raw.startswith("git@"):
            source = raw
        else:
            source = _path(f["source"], base, what="kernel source")
    ref = f["ref"].as_str() if "ref" in f else default.ref
    series = None if "series" in f else default.series
    if "series" in f and f["series"].as_str() != "none":
        series = _path(f["series"], base, what="patch series")
        if series.is_dir():
            series = series / "series"
            if not series.exists():
                raise f["series"].error(
                    f"{series} not found: a series directory needs a 'series' file"
                )
    base_config = (
        f["base_config"].as_choice(BASE_CONFIGS) if "base_config" in f else default.base_config
    )
    fragments = list(default.fragments)
    if "fragments" in f:
        fragments = [_path(item, base, what="kconfig fragment") for item in f["fragments"].items()]
    cmdline = f["cmdline"].as_str() if "cmdline" in f else default.cmdline
    return KernelSpec(source, ref, series, base_config, tuple(fragments), cmdline)


SIDE_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _compare(
    node: schema.Node, base: Path, kernel: KernelSpec
) -> tuple[tuple[str, KernelSpec], ...]:
    """`compare: {baseline: {...}, patched: {...}}`: each side overrides the kernel section.

    More sides may come between the two (`patches-1-9: {...}`), in the order given: each is
    compared with the baseline like the patched side, and a benchmark table shows them all.
    """
    entries = node.entries()
    for label, value in entries:
        if not SIDE_LABEL.match(label):
            raise value.error(f"compare side '{label}': use letters, digits, '.', '_', '-'")
    sides = dict(entries)
    for label in ("baseline", "patched"):
        schema.require(sides, label, node)
    order = ["baseline", *(k for k, _ in entries if k not in ("baseline", "patched")), "patched"]
    return tuple((label, _kernel(sides[label], base, kernel)) for label in order)


def _machine(node: schema.Node | None) -> MachineSpec:
    if node is None:
        return MachineSpec()
    f = node.mapping(("accel", "memory", "cpus", "boot_timeout", "step_timeout"))
    defaults = MachineSpec()
    memory_mb = defaults.memory_mb
    if "memory" in f:
        memory_mb = f["memory"].as_size(align=1 << 20) >> 20
        if memory_mb < 256:
            raise f["memory"].error("the guest needs at least 256M")
    return MachineSpec(
        accel=f["accel"].as_choice(ACCELS) if "accel" in f else defaults.accel,
        memory_mb=memory_mb,
        cpus=f["cpus"].as_int(minimum=1) if "cpus" in f else defaults.cpus,
        boot_timeout=(
            f["boot_timeout"].as_float(minimum=1) if "boot_timeout" in f else defaults.boot_timeout
        ),
        step_timeout=(
            f["step_timeout"].as_float(minimum=1) if "step_timeout" in f else defaults.step_timeout
        ),
    )


def load(path: Path) -> RunConfig:
    path = path.resolve() if path.exists() else path
    root = schema.load(path)
    f = root.mapping(
        ("kernel", "machine", "workloads", "scenarios", "setup", "selftests", "compare")
    )
    base = path.parent
    scenarios: list[workload.Scenario] = []
    files: list[Path] = []
    if "workloads" in f:
        for item in f["workloads"].items():
            wl = _path(item, base, what="workload file")
            files.append(wl)
            scenarios.extend(workload.load_workload(wl))
    if "scenarios" in f:
        scenarios.extend(workload.parse_scenarios(f["scenarios"]))
    override = workload.parse_setup_override(f["setup"]) if "setup" in f else {}
    scenarios = [workload.with_setup(sc, override) for sc in scenarios]
    seen: dict[str, workload.Scenario] = {}
    for sc in scenarios:
        if sc.name in seen:
            raise ConfigError(
                f"{sc.source}: scenario name '{sc.name}' is already used at {seen[sc.name].source}"
            )
        seen[sc.name] = sc
    plan = selftests.parse_plan(f["selftests"]) if "selftests" in f else None
    if plan is not None and scenarios:
        raise f["selftests"].error("a run config runs either scenarios or selftests, not both")
    if "compare" in f and plan is None:
        raise f["compare"].error("compare needs a 'selftests' section to compare")
    kernel = _kernel(f.get("kernel"), base)
    return RunConfig(
        path=path,
        kernel=kernel,
        machine=_machine(f.get("machine")),
        scenarios=tuple(scenarios),
        workload_files=tuple(files),
        selftests=plan,
        compare=_compare(f["compare"], base, kernel) if "compare" in f else (),
        setup_override=tuple(override.items()),
    )


def with_kernel(cfg: RunConfig, kernel: KernelSpec) -> RunConfig:
    return replace(cfg, kernel=kernel)


def select(cfg: RunConfig, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> RunConfig:
    """Keep the scenarios (or selftests) whose name matches an `include` glob, if any are
    given, and no `exclude` glob (fnmatch: *, ?, [..]). Selecting nothing is an error.
    """
    if not include and not exclude:
        return cfg

    def wanted(name: str) -> bool:
        if include and not any(fnmatch.fnmatchcase(name, g) for g in include):
            return False
        return not any(fnmatch.fnmatchcase(name, g) for g in exclude)

    names = (
        [t.name for t in cfg.selftests.tests] if cfg.selftests else [s.name for s in cfg.scenarios]
    )
    if not any(wanted(n) for n in names):
        asked = " ".join([*(f"--scenario {g!r}" for g in include),
                          *(f"--exclude {g!r}" for g in exclude)])  # fmt: skip
        raise ConfigError(
            f"{cfg.path}: {asked} selects none of its {len(names)} "
            f"{'selftests' if cfg.selftests else 'scenarios'}: {', '.join(names) or '(none)'}"
        )
    if cfg.selftests is not None:
        tests = tuple(t for t in cfg.selftests.tests if wanted(t.name))
        return replace(cfg, selftests=replace(cfg.selftests, tests=tests))
    return replace(cfg, scenarios=tuple(s for s in cfg.scenarios if wanted(s.name)))
