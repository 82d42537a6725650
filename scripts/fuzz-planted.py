#!/usr/bin/env python3
"""Does harness fuzz find a planted bug? The series plus one wrong patch, fuzzed until found.

    .venv/bin/python scripts/fuzz-planted.py [--seed S] [--limit 10m] [--results DIR]

Builds the kernel of configs/series.yaml with tests/data/fuzz/planted-*.patch on top (the
series is read from kernel-patches/series as it is now, so the planted patch rides on the
current series), fuzzes it with a fixed seed until the first finding, and checks the issue's
bar: found within the limit (10 minutes of fuzzing, the build not counted) and shrunk to at
most 6 steps. Prints the shrunk workload. Exit 0 when both hold, 1 when not, 2 on an error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import report, run, runconfig  # noqa: E402
from harness.campaign import fuzz  # noqa: E402
from harness.errors import HarnessError  # noqa: E402

PLANTED = sorted((ROOT / "tests" / "data" / "fuzz").glob("planted-*.patch"))
MAX_STEPS = 6


def planted_config(work: Path, patch: Path) -> Path:
    """A run config: configs/series.yaml's kernel with `patch` after the whole series."""
    series_dir = ROOT / "kernel-patches"
    names = [
        line.strip()
        for line in (series_dir / "series").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    work.mkdir(parents=True, exist_ok=True)
    series = work / "series"
    series.write_text("".join(f"{series_dir / n}\n" for n in names) + f"{patch}\n")
    base = runconfig.load(ROOT / "configs" / "series.yaml")
    config = work / "planted.yaml"
    kernel = base.kernel
    config.write_text(
        "# configs/series.yaml's kernel with a planted bug (scripts/fuzz-planted.py)\n"
        "kernel:\n"
        f"  source: {kernel.source}\n"
        f"  series: {series}\n"
        f"  base_config: {kernel.base_config}\n"
        f"  fragments: [{', '.join(str(p) for p in kernel.fragments)}]\n"
        "machine: {accel: auto, memory: 1G, cpus: 2}\n"
        "scenarios: []\n"
    )
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", default="10m", help="fuzzing time allowed (default 10m)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--results", default=str(ROOT / "results"))
    args = parser.parse_args()
    if not PLANTED:
        print("no planted patch under tests/data/fuzz", file=sys.stderr)
        return 2
    results = Path(args.results).resolve()
    limit = fuzz.parse_duration(args.limit)
    config = planted_config(results / "planted", PLANTED[0])
    cfg = runconfig.load(config)
    options = fuzz.FuzzOptions(seed=args.seed, seconds=limit, batch=args.batch,
                               stop_on_find=True)  # fmt: skip
    started = time.monotonic()
    fuzz.stop_on_sigterm()
    try:
        code = run.execute(cfg, results, ["fuzz-planted.py", *sys.argv[1:]],
                           progress=report.Progress(), body=fuzz.fuzz_body(options))  # fmt: skip
    except HarnessError as exc:
        print(f"fuzz-planted: error: {exc}", file=sys.stderr)
        return 2
    summary_path = (results / "latest" / "fuzz" / "summary.json").resolve()
    if code not in (run.EXIT_PASS, run.EXIT_FAIL) or not summary_path.exists():
        print(f"fuzz-planted: the campaign did not finish (exit {code})", file=sys.stderr)
        return 2
    summary = json.loads(summary_path.read_text())
    print(f"\nplanted bug: {PLANTED[0].name}; whole script {time.monotonic() - started:.0f}s")
    if not summary["findings"]:
        print(f"NOT FOUND in {limit:.0f}s of fuzzing ({summary['workloads']} workloads)")
        return 1
    finding = summary["findings"][0]
    print(
        f"found {finding['signature']} ({finding['status']}) after "
        f"{finding['found_after_seconds']:.0f}s of fuzzing and {summary['workloads']} "
        f"workloads; shrunk in {finding['shrink_seconds']:.0f}s from "
        f"{finding['steps_before']} to {finding['steps']} steps: {finding['path']}\n"
    )
    print(Path(finding["path"]).read_text())
    ok = finding["found_after_seconds"] <= limit and finding["steps"] <= MAX_STEPS
    print("PASS" if ok else f"FAIL: the bar is found within {limit:.0f}s, <= {MAX_STEPS} steps")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
