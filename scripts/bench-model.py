#!/usr/bin/env python3
"""Time the reference model on 1 GiB of anonymous THP memory (262,144 pages).

The scenario is built in code: mmap 1 GiB, MADV_HUGEPAGE, write every page, probe it
all. The model works on extents, so this must stay well under a second; the script
prints the figure and exits non-zero if it does not.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import model
from harness.schema import Where
from harness.workload import ARENA, Madvise, Mmap, Probe, Scenario, Setup, Touch

GIB = 1 << 30
BUDGET_SECONDS = 1.0


def scenario() -> Scenario:
    here = Where(Path("<bench>"), 0)
    steps = (
        Mmap(1, here, "main", "a", ARENA, GIB, None, 0, False, "rw"),
        Madvise(2, here, "main", "a", ARENA, GIB, "hugepage"),
        Touch(3, here, "main", "a", ARENA, GIB, True),
        Probe(4, here, "main", "all", "a", ARENA, GIB),
    )
    return Scenario("bench-1g-anon-thp", "1 GiB anon THP", Setup(), steps, here)


def main() -> int:
    sc = scenario()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = model.predict(sc)
        best = min(best, time.perf_counter() - start)
    probe = result.probes["all"]
    pages = sum(f.pages_in_range for f in probe.folios)
    print(
        f"1 GiB anon THP ({pages} pages, {len(probe.folios)} folios): "
        f"predicted in {best * 1000:.1f} ms (best of 3; budget {BUDGET_SECONDS:.0f} s)"
    )
    return 0 if best < BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
