"""scripts/check-prefixes.py: each prefix of the real series gets the kconfig it offers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "check_prefixes", ROOT / "scripts" / "check-prefixes.py"
)
assert _spec and _spec.loader
check_prefixes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_prefixes)


def test_options_come_from_the_patches_that_add_their_kconfig_entries() -> None:
    patches = check_prefixes.series_patches(ROOT / "kernel-patches" / "series")
    added = check_prefixes.options_added(patches)
    # The probes come with patch 1; W is offered only by the last patch, once every path keeps it.
    assert added == {"FOLIO_MAPCOUNT_DEBUG": 1, "FOLIO_PT_MAPCOUNT": len(patches)}


def test_a_prefix_leaves_out_what_later_patches_add(tmp_path: Path) -> None:
    patches = check_prefixes.series_patches(ROOT / "kernel-patches" / "series")
    added = check_prefixes.options_added(patches)
    fragment = ROOT / "configs" / "kconfig" / "series.config"
    early = check_prefixes.fragment_for_prefix(fragment, added, 11, tmp_path / "11").read_text()
    assert "\nCONFIG_FOLIO_MAPCOUNT_DEBUG=y\n" in early
    assert "\n# CONFIG_FOLIO_PT_MAPCOUNT=y  (added by patch 12)\n" in early
    full = check_prefixes.fragment_for_prefix(fragment, added, 12, tmp_path / "12").read_text()
    assert full == fragment.read_text()
    # Fragments of the base kernel are untouched.
    base = ROOT / "configs" / "kconfig" / "base.config"
    assert check_prefixes.fragment_for_prefix(base, added, 1, tmp_path / "b").read_text() == (
        base.read_text()
    )
