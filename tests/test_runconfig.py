"""Run config validation: every user mistake names the file, the line and the key."""

from pathlib import Path

import pytest

from harness import runconfig
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "configs"


def load_error(name: str) -> str:
    with pytest.raises(ConfigError) as info:
        runconfig.load(DATA / name)
    return str(info.value)


def test_good_config_parses_every_field() -> None:
    cfg = runconfig.load(DATA / "good.yaml")
    assert cfg.kernel.series is None
    assert cfg.kernel.fragments == ((DATA / "../../../configs/kconfig/base.config").resolve(),)
    assert cfg.kernel.cmdline == "quiet"
    assert cfg.machine == runconfig.MachineSpec("tcg", 512, 1, 30.0, 10.0)
    assert cfg.scenarios == ()


def test_unknown_key_names_file_line_and_key() -> None:
    message = load_error("unknown-key.yaml")
    assert "unknown-key.yaml:5" in message
    assert "machine.cpu" in message
    assert "allowed keys" in message and "cpus" in message


def test_wrong_type_names_key_and_value() -> None:
    message = load_error("wrong-type.yaml")
    assert "wrong-type.yaml:4" in message
    assert "machine.cpus" in message
    assert "expected an integer" in message and "'two'" in message


def test_missing_fragment_names_the_fragment() -> None:
    message = load_error("missing-fragment.yaml")
    assert "missing-fragment.yaml:4" in message
    assert "kernel.fragments[1]" in message
    assert "no-such-fragment.config" in message


def test_bad_choice_lists_the_choices() -> None:
    message = load_error("bad-accel.yaml")
    assert "bad-accel.yaml:2" in message and "auto, kvm, tcg" in message


def test_yaml_syntax_error_names_the_line() -> None:
    message = load_error("syntax.yaml")
    assert "syntax.yaml:" in message and "YAML syntax error" in message


def test_missing_config_file() -> None:
    message = load_error("does-not-exist.yaml")
    assert "does-not-exist.yaml: no such file" in message


def test_shipped_configs_load() -> None:
    root = Path(__file__).parent.parent / "configs"
    # The nightly matrix and the hosts example are not run configs (tests/test_nightly.py).
    for path in sorted(root.glob("*.yaml")):
        if path.name not in ("nightly.yaml", "hosts.example.yaml"):
            runconfig.load(path)


def test_scenario_globs_select_and_exclude() -> None:
    cfg = runconfig.load(ROOT / "configs" / "thp.yaml")
    shmem = runconfig.select(cfg, ["shmem-*"])
    assert shmem.scenarios and all(s.name.startswith("shmem-") for s in shmem.scenarios)
    assert len(shmem.scenarios) < len(cfg.scenarios)
    fork = runconfig.select(cfg, ["anon-thp-fork-*"], ["*-cow-*"])
    assert [s.name for s in fork.scenarios] == [
        "anon-thp-fork-shares-pmd", "anon-thp-fork-child-exits", "anon-thp-fork-pte-mapped"
    ]  # fmt: skip
    several = runconfig.select(cfg, ["shmem-pmd", "anon-thp-pmd"])
    assert [s.name for s in several.scenarios] == ["anon-thp-pmd", "shmem-pmd"]  # config order
    assert runconfig.select(cfg) is cfg
    everything_but = runconfig.select(cfg, exclude=["anon-*"])
    assert [s.name for s in everything_but.scenarios] == [
        s.name for s in cfg.scenarios if not s.name.startswith("anon-")
    ]


def test_a_glob_that_selects_nothing_names_what_there_is() -> None:
    cfg = runconfig.load(ROOT / "configs" / "thp.yaml")
    with pytest.raises(ConfigError) as info:
        runconfig.select(cfg, ["shmem-pdm"])
    message = str(info.value)
    assert "thp.yaml" in message and "--scenario 'shmem-pdm'" in message
    assert "shmem-pmd" in message  # the names to choose from


def test_selftest_configs_select_tests_by_name() -> None:
    cfg = runconfig.load(ROOT / "configs" / "selftests.yaml")
    assert cfg.selftests is not None
    picked = runconfig.select(cfg, ["gup_test-*"], ["*-ct"])
    assert picked.selftests is not None
    assert [t.name for t in picked.selftests.tests] == ["gup_test-u", "gup_test-a"]
    assert picked.selftests.programs == ("gup_test",)  # only what is run gets built
