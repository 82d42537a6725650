"""The workload parser: positions in errors, semantic checks, guest script generation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import schema, workload
from harness.errors import ConfigError

DATA = Path(__file__).parent / "data" / "workloads"
M = 1 << 20


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        workload.load_workload(path)
    return str(info.value)


def _load_text(tmp_path: Path, text: str) -> list[workload.Scenario]:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return workload.load_workload(path)


def _error_text(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load_text(tmp_path, text)
    return str(info.value)


# --- errors name the file, the line and the key ------------------------------------------

BAD_FIXTURES = [
    ("bad-unknown-map.yaml", 5, "scenarios[0].steps[1].touch.map", "unknown map 'b'"),
    ("bad-unmapped.yaml", 8, "scenarios[0].steps[2].probe.map", "fully unmapped at"),
    ("bad-exited.yaml", 7, "scenarios[0].steps[3].touch.proc", "process 'c' exited at"),
    ("bad-size.yaml", 4, "scenarios[0].steps[0].mmap.length", "multiple of 4096"),
    ("bad-range.yaml", 5, "scenarios[0].steps[1].munmap.length", "outside the mapping"),
    ("bad-mremap-as.yaml", 5, "scenarios[0].steps[1].mremap", "needs 'as'"),
    ("bad-tmpfs-path.yaml", 7, "scenarios[0].steps[0].file.path", "not under a mount"),
    ("bad-duplicate.yaml", 5, "scenarios[0].steps[1].mmap.map", "already used"),
    ("bad-overlap.yaml", 5, "scenarios[0].steps[1].mmap.at", "overlaps map 'a'"),
    ("bad-unknown-key.yaml", 4, "scenarios[0].steps[0].mmap.huge", "unknown key 'huge'"),
    ("bad-moved.yaml", 6, "scenarios[0].steps[2].mremap", "includes unmapped pages"),
]


@pytest.mark.parametrize(("name", "line", "key", "what"), BAD_FIXTURES)
def test_errors_name_file_line_and_key(name: str, line: int, key: str, what: str) -> None:
    message = _error(DATA / name)
    assert message.startswith(f"{DATA / name}:{line} (key '{key}'): "), message
    assert what in message


def test_the_earlier_position_is_named_too() -> None:
    message = _error(DATA / "bad-unmapped.yaml")
    assert f"{DATA / 'bad-unmapped.yaml'}:5" in message.split(": ", 1)[1]


@pytest.mark.parametrize(
    ("steps", "what"),
    [
        ("- touch: {map: a, offset: 4M}", "outside the mapping"),
        ("- touch: {map: a, length: 0}", "length must be positive"),
        ("- mmap: {map: b, length: 4K, at: 2M, file: nope}", "unknown file 'nope'"),
        ("- fork: {child: main}", "process name 'main' already used"),
        ("- touch: {proc: ghost, map: a}", "unknown process 'ghost'"),
        ("- spawn: {}", "missing required key 'proc'"),
        ("- {touch: {map: a}, munmap: {map: a}}", "exactly one operation key"),
        ("- frobnicate: {map: a}", "unknown key 'frobnicate'"),
        ("- mremap: {map: a, to: 1M}", "overlaps the source"),
        ("- mremap: {map: a, to: 8M, as: b}", "keeps its name"),
        ("- madvise: {map: a, advice: huge}", "must be one of"),
        ("- touch: {map: a, write: 1}", "expected true or false"),
        ("- probe: {label: x, map: a}\n      - probe: {label: x, map: a}", "label 'x' already"),
        ("- file: {file: anon, kind: memfd, size: 4K}", "reserved"),
        ("- file: {file: f, kind: memfd, size: 4K, path: /x}", "a memfd has no path"),
        (
            "- file: {file: f, kind: memfd, size: 4K}\n      - punch: {file: f, length: 8K}",
            "beyond the end of file",
        ),
        (
            "- file: {file: f, kind: memfd, size: 4K}\n"
            "      - mmap: {map: b, length: 8K, at: 8M, file: f}",
            "beyond the end of file 'f'",
        ),
        ("- mmap: {map: b, length: 4K, at: 128T}", "expected a size"),
        ("- mmap: {map: b, length: 4K, at: 200000G}", "beyond the user address space"),
    ],
)
def test_semantic_errors(tmp_path: Path, steps: str, what: str) -> None:
    text = f"""scenarios:
  - name: s
    steps:
      - mmap: {{map: a, length: 2M, at: 0}}
      {steps}
"""
    message = _error_text(tmp_path, text)
    assert what in message, message
    assert re.match(rf"{re.escape(str(tmp_path / 'w.yaml'))}:\d+ ", message), message


def test_duplicate_scenario_names(tmp_path: Path) -> None:
    text = """scenarios:
  - name: s
    steps: [{drop_caches: }]
  - name: s
    steps: [{drop_caches: }]
"""
    message = _error_text(tmp_path, text)
    assert ":4 " in message and "already used at" in message


def test_workload_file_holds_only_scenarios(tmp_path: Path) -> None:
    message = _error_text(tmp_path, "scenarios: []\nkernel: {}\n")
    assert "unknown key 'kernel'" in message


def test_bad_scenario_name(tmp_path: Path) -> None:
    message = _error_text(tmp_path, "scenarios:\n  - name: Bad Name\n    steps: []\n")
    assert "must match" in message


# --- resolution --------------------------------------------------------------------------


def test_addresses_follow_mremap_moves() -> None:
    scenarios = workload.load_workload(DATA / "basic.yaml")
    steps = scenarios[1].steps
    mmap = steps[2]
    assert isinstance(mmap, workload.Mmap)
    assert mmap.addr == workload.ARENA + 1 * M and mmap.file_offset == 2 * M
    partial, whole, touch = steps[4], steps[5], steps[6]
    assert isinstance(partial, workload.Mremap) and isinstance(whole, workload.Mremap)
    assert partial.addr == workload.ARENA + 2 * M and partial.new_map == "t"
    assert whole.addr == workload.ARENA + 8 * M and whole.new_addr == workload.ARENA + 16 * M
    assert whole.new_map == "t"
    assert isinstance(touch, workload.Touch)
    assert (touch.addr, touch.length) == (workload.ARENA + 16 * M, 1 * M)


def test_steps_keep_their_position() -> None:
    scenario = workload.load_workload(DATA / "basic.yaml")[0]
    assert [s.index for s in scenario.steps] == [1, 2, 3, 4, 5, 6]
    assert [s.where.line for s in scenario.steps] == [7, 8, 9, 10, 11, 12]
    assert scenario.source.line == 2
    assert [p.label for p in scenario.probes()] == ["full", "half"]


def test_setup_defaults_and_mounts() -> None:
    first, second = workload.load_workload(DATA / "basic.yaml")
    assert first.setup.shmem_enabled == "never" and first.setup.mounts == ()
    mount = second.setup.mount_for("/mnt/huge/f")
    assert mount is not None and mount.huge == "always" and mount.size == 64 * M
    assert second.setup.mount_for("/mnt/hugeother/f") is None


def test_parse_scenarios_from_a_run_config_node(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("kernel: {}\nscenarios:\n  - name: inline\n    steps: [{drop_caches: }]\n")
    root = schema.load(path)
    fields = root.mapping(("kernel", "scenarios"))
    (scenario,) = workload.parse_scenarios(fields["scenarios"])
    assert scenario.name == "inline" and isinstance(scenario.steps[0], workload.DropCaches)


def test_fork_child_inherits_maps_and_moves_are_per_process(tmp_path: Path) -> None:
    text = """scenarios:
  - name: s
    steps:
      - mmap: {map: a, length: 2M, at: 0}
      - fork: {child: c}
      - mremap: {proc: c, map: a, to: 4M}
      - touch: {map: a}
      - touch: {proc: c, map: a}
"""
    steps = _load_text(tmp_path, text)[0].steps
    assert isinstance(steps[3], workload.Touch) and steps[3].addr == workload.ARENA
    assert isinstance(steps[4], workload.Touch) and steps[4].addr == workload.ARENA + 4 * M


# --- guest script ------------------------------------------------------------------------


def test_guest_script_golden() -> None:
    scenarios = workload.load_workload(DATA / "basic.yaml")
    script = "".join(workload.guest_script(s) for s in scenarios)
    assert script == (DATA / "basic.script").read_text()


def test_guest_script_shape() -> None:
    scenario = workload.load_workload(DATA / "basic.yaml")[0]
    lines = workload.guest_script(scenario).splitlines()
    assert lines[0] == "scenario anon-thp-half-munmap"
    assert lines[1] == "sysfs /sys/kernel/mm/transparent_hugepage/enabled madvise"
    assert lines[4] == "sysfs /sys/kernel/debug/fault_around_bytes 65536"
    assert lines[5] == "sysfs /sys/kernel/debug/fault_around_whole_folio 0"
    assert lines[6] == f"step 1 mmap main {workload.ARENA} {4 * M} anon 0 private rw"
    assert lines[-2] == f"step 6 probe main half {workload.ARENA} {2 * M}"
    assert lines[-1] == "end"
    assert all("  " not in line for line in lines)


def test_fault_around_knobs_parse_round_down_and_refuse_more_than_a_table(tmp_path: Path) -> None:
    text = """scenarios:
  - name: s
    setup: {fault_around_bytes: 96K, fault_around_whole_folio: true}
    steps: [{drop_caches: }]
"""
    (scenario,) = _load_text(tmp_path, text)
    assert scenario.setup.fault_around_bytes == 96 * 1024
    assert scenario.setup.fault_around_pages == 16  # rounddown_pow_of_two(24 pages)
    assert ("/sys/kernel/debug/fault_around_whole_folio", "1") in scenario.setup.knobs()
    assert workload.Setup(fault_around_bytes=0).fault_around_pages == 1
    too_big = text.replace("96K", "4M")
    with pytest.raises(ConfigError, match=r"yaml:3 .*fault_around_bytes is at most 2M"):
        _load_text(tmp_path, too_big)


def test_run_config_setup_forces_knobs_on_every_scenario(tmp_path: Path) -> None:
    from harness import runconfig

    (tmp_path / "w.yaml").write_text(
        "scenarios:\n  - name: a\n    setup: {fault_around_bytes: 4K}\n"
        "    steps: [{drop_caches: }]\n"
    )
    (tmp_path / "run.yaml").write_text(
        "workloads: [w.yaml]\nsetup: {fault_around_whole_folio: true}\n"
    )
    cfg = runconfig.load(tmp_path / "run.yaml")
    (scenario,) = cfg.scenarios
    assert scenario.setup.fault_around_whole_folio is True
    assert scenario.setup.fault_around_bytes == 4096  # the scenario's own knob stays
    (tmp_path / "bad.yaml").write_text("workloads: [w.yaml]\nsetup: {mounts: []}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2.*mounts"):
        runconfig.load(tmp_path / "bad.yaml")
