"""Run config validation: every user mistake names the file, the line and the key."""

from pathlib import Path

import pytest

from harness import runconfig
from harness.errors import ConfigError

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
