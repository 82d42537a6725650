"""The nightly matrix: cells (a run config plus overrides, or a campaign budget) and their inputs.

A cell names one run config and what to change in it: the kernel (source, series, the first N
patches of a series, fragments, command line), the THP sysfs knobs of every scenario, a subset
of its scenarios or selftests, the machine; or it runs a campaign command (`harness fuzz`,
`harness mutate`) on that config for a time budget. `prepare()` writes the cell's derived
config (and the files it needs: a series prefix, rewritten workload files) into the cell's own
directory and returns the harness command that runs it, so a cell runs the same way here, on
another host, or in a CI job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import patches, runconfig, schema, workload
from harness.errors import ConfigError

CELL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# The campaign commands a cell may run; each takes --config and --time.
CAMPAIGNS = ("fuzz", "mutate")
DURATION = re.compile(r"^(\d+)(s|m|h)$")
KERNEL_KEYS = ("source", "ref", "series", "series_prefix", "base_config", "fragments", "cmdline")
THP_KEYS = ("thp_enabled", "thp_defrag", "shmem_enabled")
MACHINE_KEYS = ("accel", "memory", "cpus", "boot_timeout", "step_timeout")
DEFAULT_RETRIES = 2
# Host memory a cell needs beyond its guest's: QEMU itself, the harness, a build's make.
CELL_OVERHEAD_MB = 512


@dataclass(frozen=True)
class Campaign:
    command: str  # a harness subcommand: fuzz | mutate
    time: str  # its budget, e.g. 30m
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    name: str
    config: Path
    where: schema.Where
    kernel: dict[str, Any] = field(default_factory=dict)  # overrides, paths already absolute
    series_prefix: int | None = None
    thp: dict[str, str] = field(default_factory=dict)
    select: tuple[str, ...] = ()
    machine: dict[str, Any] = field(default_factory=dict)
    campaign: Campaign | None = None
    memory_mb: int = 1024  # the guest's (largest) memory, for scheduling

    @property
    def host_memory_mb(self) -> int:
        return self.memory_mb + CELL_OVERHEAD_MB


@dataclass(frozen=True)
class Matrix:
    path: Path
    cells: tuple[Cell, ...]
    retries: int = DEFAULT_RETRIES

    def cell(self, name: str) -> Cell:
        for cell in self.cells:
            if cell.name == name:
                return cell
        known = ", ".join(c.name for c in self.cells)
        raise ConfigError(f"{self.path}: no cell named {name!r}; the cells are: {known}")


def duration_seconds(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def _duration(node: schema.Node) -> str:
    text = node.as_text().strip()
    if not DURATION.match(text):
        raise node.error(f"expected a duration such as 90s, 30m or 2h, got {text!r}")
    return text


def _abs(raw: str, base: Path) -> str:
    """A path of a config, made absolute against its file's directory (URLs, 'none' kept)."""
    if raw == "none" or "://" in raw or raw.startswith("git@"):
        return raw
    path = Path(raw).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _existing(node: schema.Node, base: Path, what: str) -> str:
    path = _abs(node.as_str(), base)
    local = path != "none" and "://" not in path and not path.startswith("git@")
    if local and not Path(path).exists():
        raise node.error(f"{what} {node.as_str()!r} not found (looked for {path})")
    return path


def _kernel(node: schema.Node, base: Path) -> tuple[dict[str, Any], int | None]:
    f = node.mapping(KERNEL_KEYS)
    out: dict[str, Any] = {}
    for key in ("ref", "cmdline"):
        if key in f:
            out[key] = f[key].as_str()
    if "base_config" in f:
        out["base_config"] = f["base_config"].as_choice(runconfig.BASE_CONFIGS)
    if "source" in f:
        out["source"] = _existing(f["source"], base, "kernel source")
    if "series" in f:
        out["series"] = _existing(f["series"], base, "patch series")
    if "fragments" in f:
        out["fragments"] = [
            _existing(item, base, "kconfig fragment") for item in f["fragments"].items()
        ]
    prefix = f["series_prefix"].as_int(minimum=1) if "series_prefix" in f else None
    return out, prefix


def _campaign(node: schema.Node) -> Campaign:
    f = node.mapping(("command", "time", "args"))
    command = schema.require(f, "command", node).as_choice(CAMPAIGNS)
    time = _duration(schema.require(f, "time", node))
    args = tuple(item.as_text() for item in f["args"].items()) if "args" in f else ()
    return Campaign(command, time, args)


def _cell(node: schema.Node, base: Path, configs: dict[Path, runconfig.RunConfig]) -> Cell:
    f = node.mapping(
        ("name", "config", "kernel", "thp", "select", "machine", "campaign", "description")
    )
    name_node = schema.require(f, "name", node)
    name = name_node.as_str()
    if not CELL_NAME.match(name):
        raise name_node.error(f"cell name {name!r} must match [a-z0-9][a-z0-9_.-]*")
    config_node = schema.require(f, "config", node)
    config = Path(_existing(config_node, base, "run config"))
    # The run config must stand on its own: its own errors point into it, not at the matrix.
    # Loaded once per file: parsing the workloads is most of a matrix's load time.
    cfg = configs.get(config) or configs.setdefault(config, runconfig.load(config))
    kernel, prefix = _kernel(f["kernel"], base) if "kernel" in f else ({}, None)
    if prefix is not None:
        series = Path(kernel["series"]) if "series" in kernel else cfg.kernel.series
        if series is None or str(series) == "none":
            raise f["kernel"].error("series_prefix needs a series (here or in the run config)")
        if series.is_dir():
            series = series / "series"
        count = len(patches.read_series(series).patches)
        if prefix > count:
            raise f["kernel"].error(
                f"series_prefix {prefix} is longer than the series ({count} patches in {series})"
            )
    thp: dict[str, str] = {}
    if "thp" in f:
        choices = {
            "thp_enabled": workload.THP_ENABLED,
            "thp_defrag": workload.THP_DEFRAG,
            "shmem_enabled": workload.SHMEM_ENABLED,
        }
        for key, value in f["thp"].mapping(THP_KEYS).items():
            thp[key] = value.as_choice(tuple(choices[key]))
        if cfg.selftests is not None:
            raise f["thp"].error(f"{config.name} runs selftests: THP knobs apply to scenarios")
    select: tuple[str, ...] = ()
    if "select" in f:
        select = tuple(item.as_str() for item in f["select"].items())
        known = (
            [t.name for t in cfg.selftests.tests] if cfg.selftests is not None
            else [sc.name for sc in cfg.scenarios]
        )  # fmt: skip
        for item, wanted in zip(f["select"].items(), select, strict=True):
            if wanted not in known:
                raise item.error(f"{config.name} has no scenario or test {wanted!r}")
        if not select:
            raise f["select"].error("select at least one scenario or test (or omit 'select')")
    machine: dict[str, Any] = {}
    memory_mb = cfg.machine.memory_mb
    if "machine" in f:
        # Checked here with the run config's rules; written into the derived config as given.
        for key, value in f["machine"].mapping(MACHINE_KEYS).items():
            if key == "accel":
                machine[key] = value.as_choice(runconfig.ACCELS)
            elif key == "memory":
                memory_mb = value.as_size(align=1 << 20) >> 20
                if memory_mb < 256:
                    raise value.error("the guest needs at least 256M")
                machine[key] = f"{memory_mb}M"
            elif key == "cpus":
                machine[key] = value.as_int(minimum=1)
            else:
                machine[key] = value.as_float(minimum=1)
    campaign = _campaign(f["campaign"]) if "campaign" in f else None
    return Cell(
        name=name, config=config, where=node.where, kernel=kernel, series_prefix=prefix,
        thp=thp, select=select, machine=machine, campaign=campaign, memory_mb=memory_mb,
    )  # fmt: skip


def load(path: Path) -> Matrix:
    path = path.resolve() if path.exists() else path
    root = schema.load(path)
    f = root.mapping(("retries", "cells"))
    retries = f["retries"].as_int(minimum=0) if "retries" in f else DEFAULT_RETRIES
    cells: list[Cell] = []
    configs: dict[Path, runconfig.RunConfig] = {}
    for item in schema.require(f, "cells", root).items():
        cell = _cell(item, path.parent, configs)
        for other in cells:
            if other.name == cell.name:
                raise item.error(f"cell name '{cell.name}' is already used at {other.where}")
        cells.append(cell)
    if not cells:
        raise f["cells"].error("list at least one cell")
    return Matrix(path, tuple(cells), retries)


# --- a cell's inputs -----------------------------------------------------------------------


def _absolute_kernel(section: dict[str, Any], base: Path) -> None:
    for key in ("source", "series"):
        if isinstance(section.get(key), str):
            section[key] = _abs(section[key], base)
    if isinstance(section.get("fragments"), list):
        section["fragments"] = [_abs(str(p), base) for p in section["fragments"]]


def _series_prefix(series: Path, count: int, dest: Path) -> Path:
    """A series file of the first `count` patches, beside links to them."""
    if series.is_dir():
        series = series / "series"
    chosen = patches.read_series(series).patches[:count]
    dest.mkdir(parents=True, exist_ok=True)
    for patch in chosen:
        link = dest / patch.path.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(patch.path)
    text = f"# The first {count} patches of {series}\n"
    text += "".join(f"{p.path.name}\n" for p in chosen)
    (dest / "series").write_text(text)
    return dest / "series"


def _rewrite_scenarios(items: list[Any], cell: Cell) -> list[Any]:
    kept = [sc for sc in items if not cell.select or sc.get("name") in cell.select]
    for sc in kept:
        if cell.thp:
            setup = dict(sc.get("setup") or {})
            setup.update(cell.thp)
            sc["setup"] = setup
    return kept


def prepare(cell: Cell, dest: Path, budget: str | None = None) -> list[str]:
    """Write the cell's config (and its series prefix, workloads) under dest; its harness argv."""
    dest.mkdir(parents=True, exist_ok=True)
    base = cell.config.parent
    raw: dict[str, Any] = yaml.safe_load(cell.config.read_text()) or {}
    kernel = dict(raw.get("kernel") or {})
    _absolute_kernel(kernel, base)
    kernel.update(cell.kernel)
    if cell.series_prefix is not None:
        series = Path(kernel.get("series") or "none")
        kernel["series"] = str(_series_prefix(series, cell.series_prefix, dest / "series-prefix"))
    raw["kernel"] = kernel
    for side in (raw.get("compare") or {}).values():
        if isinstance(side, dict):
            _absolute_kernel(side, base)
    if cell.machine:
        raw["machine"] = {**(raw.get("machine") or {}), **cell.machine}
    files: list[str] = []
    for i, item in enumerate(raw.get("workloads") or []):
        source = Path(_abs(str(item), base))
        if not cell.thp and not cell.select:
            files.append(str(source))
            continue
        scenarios = _rewrite_scenarios(
            (yaml.safe_load(source.read_text()) or {}).get("scenarios") or [], cell
        )
        if scenarios:
            out = dest / "workloads" / f"{i}-{source.name}"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(f"# {source}, for cell {cell.name}\n" + yaml.safe_dump(
                {"scenarios": scenarios}, sort_keys=False))  # fmt: skip
            files.append(str(out))
    if "workloads" in raw:
        raw["workloads"] = files
    if "scenarios" in raw:
        raw["scenarios"] = _rewrite_scenarios(list(raw["scenarios"] or []), cell)
    if cell.select and isinstance(raw.get("selftests"), dict):
        tests = raw["selftests"].get("tests") or []
        raw["selftests"]["tests"] = [
            t for t in tests if (t if isinstance(t, str) else t.get("name")) in cell.select
        ]
    # Named after the cell: a run's directory is named after its config (<stamp>-<cell>).
    config = dest / f"{cell.name}.yaml"
    header = f"# Cell {cell.name} of the nightly matrix: {cell.config} with its overrides.\n"
    config.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    try:
        runconfig.load(config)
    except ConfigError as exc:
        raise ConfigError(f"{cell.where}: cell {cell.name!r}: its derived config: {exc}") from None
    argv = ["run", "--config", str(config)]
    if cell.campaign is not None:
        argv = [cell.campaign.command, "--config", str(config),
                "--time", budget or cell.campaign.time, *cell.campaign.args]  # fmt: skip
    return argv
