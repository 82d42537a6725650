"""The run config: which kernel, which patches and kconfig, which machine, which workloads.

Relative paths in a run config resolve against the directory holding that config, so a run
behaves the same whatever the current directory is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness import schema, workload
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


def _path(node: schema.Node, base: Path, must_exist: bool = True, what: str = "file") -> Path:
    raw = node.as_str()
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (base / path).resolve()
    if must_exist and not path.exists():
        raise node.error(f"{what} {raw!r} not found (looked for {path})")
    return path


def _kernel(node: schema.Node | None, base: Path) -> KernelSpec:
    if node is None:
        return KernelSpec(DEFAULT_SOURCE, None, None, "tinyconfig", (), "")
    f = node.mapping(("source", "ref", "series", "base_config", "fragments", "cmdline"))
    source: Path | str = DEFAULT_SOURCE
    if "source" in f:
        raw = f["source"].as_str()
        if "://" in raw or raw.startswith("git@"):
            source = raw
        else:
            source = _path(f["source"], base, what="kernel source")
    ref = f["ref"].as_str() if "ref" in f else None
    series = None
    if "series" in f and f["series"].as_str() != "none":
        series = _path(f["series"], base, what="patch series")
        if series.is_dir():
            series = series / "series"
            if not series.exists():
                raise f["series"].error(
                    f"{series} not found: a series directory needs a 'series' file"
                )
    base_config = f["base_config"].as_choice(BASE_CONFIGS) if "base_config" in f else "tinyconfig"
    fragments: list[Path] = []
    if "fragments" in f:
        for item in f["fragments"].items():
            fragments.append(_path(item, base, what="kconfig fragment"))
    cmdline = f["cmdline"].as_str() if "cmdline" in f else ""
    return KernelSpec(source, ref, series, base_config, tuple(fragments), cmdline)


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
    f = root.mapping(("kernel", "machine", "workloads", "scenarios"))
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
    seen: dict[str, workload.Scenario] = {}
    for sc in scenarios:
        if sc.name in seen:
            raise ConfigError(
                f"{sc.source}: scenario name '{sc.name}' is already used at {seen[sc.name].source}"
            )
        seen[sc.name] = sc
    return RunConfig(
        path=path,
        kernel=_kernel(f.get("kernel"), base),
        machine=_machine(f.get("machine")),
        scenarios=tuple(scenarios),
        workload_files=tuple(files),
    )
