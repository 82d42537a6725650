"""Kconfig fragments: parsing, and the check that no requested option was dropped."""

from pathlib import Path

import pytest

from harness import kconfig
from harness.errors import ConfigError, KconfigError

DATA = Path(__file__).parent / "data" / "kconfig"


def test_fragment_lines_become_requests_with_positions() -> None:
    reqs = kconfig.read_fragment(DATA / "frag-a.config")
    assert [(r.option, r.value, r.line) for r in reqs] == [
        ("CONFIG_FOO", "y", 2),
        ("CONFIG_NUM", "8", 3),
        ("CONFIG_BAR", "n", 4),
        ("CONFIG_STR", '"hello world"', 5),
    ]


def test_inline_comment_is_rejected_with_line() -> None:
    with pytest.raises(ConfigError, match=r"bad-line.config:2: not a kconfig line"):
        kconfig.read_fragment(DATA / "bad-line.config")


def test_verify_accepts_a_config_that_kept_everything() -> None:
    reqs = kconfig.read_fragment(DATA / "frag-a.config")
    merged = kconfig.parse_config('CONFIG_FOO=y\nCONFIG_NUM=8\nCONFIG_STR="hello world"\n')
    kconfig.verify(merged, reqs)  # CONFIG_BAR absent counts as "not set"


def test_verify_names_dropped_option_and_where_it_was_asked() -> None:
    reqs = kconfig.read_fragment(DATA / "frag-a.config") + kconfig.read_fragment(
        DATA / "frag-b.config"
    )
    merged = kconfig.parse_config("CONFIG_FOO=y\nCONFIG_NUM=16\nCONFIG_BAR=y\n")
    with pytest.raises(KconfigError) as info:
        kconfig.verify(merged, reqs)
    text = str(info.value)
    assert "CONFIG_NEEDS_DEP: requested y at" in text and "frag-b.config:2, got not set" in text
    assert "CONFIG_BAR: requested n" in text and "got y" in text
    # The later fragment's CONFIG_NUM=16 wins, as in merge_config.sh: not reported.
    assert "CONFIG_NUM" not in text


def test_shipped_fragments_parse() -> None:
    root = Path(__file__).parent.parent / "configs" / "kconfig"
    for frag in root.glob("*.config"):
        assert kconfig.read_fragment(frag)
