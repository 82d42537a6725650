"""The mmbench table: medians, spreads, counters and the last/previous kernel ratio."""

from __future__ import annotations

from pathlib import Path

from harness.formats import bench


def lines(op: str, scan: str, us: list[float], ptes: str = "-") -> list[str]:
    rest = f"rmap_calls=16 rmap_pages=4096 ptes_read={ptes} adjust_ptes_read=- whole_table=-"
    return [f"# mmbench op={op} scan={scan} rep={i} us={t} {rest}" for i, t in enumerate(us)]


def test_table_gives_medians_spreads_counters_and_ratio() -> None:
    probes = bench.parse(["TAP version 13", *lines("fork", "-", [100, 120, 80]), "ok 1 - x"])
    series = bench.parse(lines("fork", "table", [250, 200, 210], "512")
                         + lines("fork", "window", [210, 200, 190], "0"))  # fmt: skip
    assert probes[("fork", "-")].median() == 100 and probes[("fork", "-")].spread() == 0.4
    assert probes[("fork", "-")].counter("ptes_read") is None  # the kernel has no counter
    assert series[("fork", "table")].counter("ptes_read") == 512
    text = bench.table([("patches-1-9", probes), ("patched", series)])
    rows = {line.split("|")[0].strip(): line for line in text.splitlines() if "|" in line}
    # Each scan mode of the patched kernel against patches 1-9's single figure.
    assert rows["fork (table)"].rstrip().endswith("2.100x")
    assert rows["fork (window)"].rstrip().endswith("2.000x")
    assert "16    512 |" in rows["fork (table)"] and "16      0 |" in rows["fork (window)"]


def test_no_mmbench_lines() -> None:
    assert bench.table([("a", bench.parse(["ok 1 - x"]))]) == "(no mmbench output)"


def test_real_mmbench_output_from_the_series_kernel() -> None:
    """Captured on the series-debug kernel: every operation with the W scan over the whole
    page table and bounded to the folio's window; the bound reads fewer PTEs, never more."""
    text = (Path(__file__).parent / "data" / "bench" / "mmbench-series-debug.log").read_text()
    results = bench.parse(text.splitlines())
    ops = {op for op, _ in results}
    assert ops == {"faultaround", "zap-shmem", "zap-anon", "fork", "mprotect", "mremap"}
    for op in ops:
        table, window = results[(op, "table")], results[(op, "window")]
        assert len(table.us) == len(window.us) == 3
        assert (window.counter("ptes_read") or 0) <= (table.counter("ptes_read") or 0)
    # Two folios share each page table of the misaligned shmem mapping: the zap of one read
    # the other's slots before the bound, and nothing after it.
    assert results[("zap-shmem", "table")].counter("ptes_read") > 0
    assert results[("zap-shmem", "window")].counter("ptes_read") == 0
