#!/usr/bin/env python3
"""Time per mutant of `harness mutate` (target: at most 30 s); prints figures, asserts nothing.

  mutant:    `harness mutate --mutant ID` for a few mutants of different files, each built
             in the config's build directory and booted with the config's scenarios: the
             whole time per mutant, split into build (git am + make) and boot (scenarios)
  raw make:  `make bzImage` with nothing to do in mutate's build directory (the floor of
             every mutant's build: kbuild's walk of the tree)

Usage: scripts/bench-mutate.py [--config configs/series.yaml] [--repeat N] [--mutant ID ...]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import patches, runconfig, source  # noqa: E402
from harness.campaign import lines, mutants  # noqa: E402

# One mutant per kind of build: a big file (memory.c), the series' own file, a header.
DEFAULT_IDS = ("0007-rmap-1495-swap-sign", "0010-folio_pt_mapcount", "0008-rmap-409-swap-sign")


def report(name: str, samples: list[float]) -> None:
    print(f"{name:<44} median {statistics.median(samples):6.1f}s  "
          f"min {min(samples):6.1f}s  max {max(samples):6.1f}s  (n={len(samples)})")  # fmt: skip


def pick(cfg: runconfig.RunConfig, wanted: list[str]) -> list[str]:
    """Mutant ids: exact ids, or the first mutant whose id starts with a given prefix."""
    src = source.prepare(cfg.kernel.source, cfg.kernel.ref)
    series = lines.series_lines(src.tree, patches.read_series(cfg.kernel.series))
    ids = [m.id for m in mutants.mutants_of(series)]
    chosen = []
    for w in wanted:
        match = next((i for i in ids if i == w), None) or next(
            (i for i in ids if i.startswith(w) and i.endswith(("delete-call", "swap-sign"))), None
        )
        if match:
            chosen.append(match)
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(ROOT / "configs" / "series.yaml"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--mutant", action="append", help="mutant id (default: three kinds)")
    args = parser.parse_args()
    cfg = runconfig.load(Path(args.config))
    ids = pick(cfg, args.mutant or list(DEFAULT_IDS))
    results_root = Path(tempfile.mkdtemp(prefix="folio-bench-mutate-"))
    harness = [sys.executable, "-m", "harness.cli", "--results", str(results_root)]

    # raw make: nothing to do in mutate's private build directory (after one campaign there)
    make_samples = []
    for _ in range(args.repeat):
        subprocess.run([*harness, "mutate", "--config", args.config, "--limit", "0"],
                       stdout=subprocess.DEVNULL, check=False)  # fmt: skip
        newest = max(results_root.glob("*-mutate*"), key=lambda p: p.stat().st_mtime)
        log = (newest / "build.log").read_text()
        make_samples += [float(x) for x in re.findall(r"^# make: ([0-9.]+)s$", log, re.M)]

    total, builds, boots = [], [], []
    for _ in range(args.repeat):
        argv = [*harness, "mutate", "--config", args.config]
        for i in ids:
            argv += ["--mutant", i]
        subprocess.run(argv, stdout=subprocess.DEVNULL)
        newest = max(results_root.glob("*-mutate*"), key=lambda p: p.stat().st_mtime)
        for result in sorted(newest.glob("mutants/*/result.json")):
            r = json.loads(result.read_text())
            print(f"  {r['id']}: {r['status']} in {r['seconds']}s "
                  f"(build {r.get('build_seconds')}s, boot {r.get('boot_seconds')}s)")  # fmt: skip
            total.append(r["seconds"])
            builds.append(r.get("build_seconds") or 0.0)
            if r.get("boot_seconds") is not None:
                boots.append(r["boot_seconds"])

    print(f"config {args.config}, {len(cfg.scenarios)} scenarios, mutants {', '.join(ids)}")
    if make_samples:
        report("raw: make bzImage, nothing to do", make_samples)
    report("mutant: build (git am + make)", builds)
    if boots:
        report("mutant: boot + scenarios + compare", boots)
    report("mutant: total (target <= 30 s)", total)
    if make_samples:
        ratio = statistics.median(builds) / statistics.median(make_samples)
        print(f"ratio mutant build / raw no-op make: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
