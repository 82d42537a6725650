#!/usr/bin/env python3
"""Build, boot and run the series scenarios on every prefix of the kernel series.

A series is bisectable only if each prefix (patches 1..k) builds, boots and passes the
scenarios with the kconfig that prefix offers: an option a later patch adds cannot be asked
for yet. For k = 1..N this script writes a run config from a template (configs/series.yaml
by default) whose series is the first k patches and whose fragments leave out every
CONFIG_X=y line whose `config X` entry a later patch adds, runs `harness run` on it, and
prints one line per prefix and a verdict. Exit status: 0 when every prefix passed, 1 when
one failed, 2 on bad input, 130 when interrupted.

    scripts/check-prefixes.py [--config configs/series.yaml] [--first K] [--last K]
                              [--source PATH_OR_URL [--ref REF]] [--keep-going]

--source/--ref build from another kernel source than the template's (a private git tree,
say, whose builds do not wait on other users of a shared source's cache).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / ".venv" / "bin" / "harness"
CONFIG_ENTRY = re.compile(r"^\+(?:menu)?config ([A-Z0-9_]+)\s*$", re.MULTILINE)
OPTION_LINE = re.compile(r"^(CONFIG_[A-Z0-9_]+)=")


def series_patches(series: Path) -> list[Path]:
    names = [line.split("#", 1)[0].strip() for line in series.read_text().splitlines()]
    return [series.parent / name.split()[0] for name in names if name]


def options_added(patches: list[Path]) -> dict[str, int]:
    """Kconfig symbol -> index (1-based) of the patch whose Kconfig hunk adds its entry."""
    added: dict[str, int] = {}
    for index, patch in enumerate(patches, start=1):
        for name in CONFIG_ENTRY.findall(patch.read_text()):
            added.setdefault(name, index)
    return added


def fragment_for_prefix(fragment: Path, added: dict[str, int], k: int, out: Path) -> Path:
    """The fragment without the options that patches after k add."""
    kept = []
    for line in fragment.read_text().splitlines():
        match = OPTION_LINE.match(line)
        if match and added.get(match.group(1)[len("CONFIG_") :], 0) > k:
            kept.append(f"# {line}  (added by patch {added[match.group(1)[7:]]})")
        else:
            kept.append(line)
    out.write_text("\n".join(kept) + "\n")
    return out


def absolute(path: str, base: Path) -> str:
    return str((base / path).resolve()) if not Path(path).is_absolute() else path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "series.yaml")
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--last", type=int, default=0, help="default: the whole series")
    parser.add_argument("--source", help="kernel source instead of the template's")
    parser.add_argument("--ref", help="git ref of --source (default: the template's)")
    parser.add_argument(
        "--prefixes", help="comma-separated prefix lengths to run, in this order (e.g. 11,10,9)"
    )
    parser.add_argument("--keep-going", action="store_true", help="go on after a failure")
    args = parser.parse_args()

    try:
        template = yaml.safe_load(args.config.read_text())
        base = args.config.resolve().parent
        kernel = template["kernel"]
        series = Path(absolute(kernel["series"], base))
        patches = series_patches(series)
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        print(f"{args.config}: not a run config with kernel.series: {err}", file=sys.stderr)
        return 2
    missing = [p for p in patches if not p.is_file()]
    if missing or not patches:
        print(f"{series}: missing patches: {missing or 'none listed'}", file=sys.stderr)
        return 2
    last = args.last or len(patches)
    if not 1 <= args.first <= last <= len(patches):
        print(f"--first/--last must satisfy 1 <= first <= last <= {len(patches)}",
              file=sys.stderr)  # fmt: skip
        return 2
    order = list(range(args.first, last + 1))
    if args.prefixes:
        try:
            order = [int(k) for k in args.prefixes.split(",")]
        except ValueError:
            order = []
        if not order or not all(1 <= k <= len(patches) for k in order):
            print(f"--prefixes: comma-separated numbers in 1..{len(patches)}", file=sys.stderr)
            return 2
    added = options_added(patches)
    results: list[tuple[int, int, float]] = []

    with tempfile.TemporaryDirectory(prefix="check-prefixes-") as tmp:
        work = Path(tmp)
        for k in order:
            prefix_dir = work / f"prefix-{k:02d}"
            prefix_dir.mkdir()
            (prefix_dir / "series").write_text("".join(f"{p.resolve()}\n" for p in patches[:k]))
            fragments = [
                str(fragment_for_prefix(Path(absolute(f, base)), added, k,
                                        prefix_dir / f"{i:02d}-{Path(f).name}"))
                for i, f in enumerate(kernel.get("fragments", []))
            ]  # fmt: skip
            config = dict(template)
            config["kernel"] = {**kernel, "series": str(prefix_dir / "series"),
                                "fragments": fragments}  # fmt: skip
            if args.source:
                config["kernel"]["source"] = args.source
                if args.ref:
                    config["kernel"]["ref"] = args.ref
            else:
                config["kernel"]["source"] = absolute(str(kernel.get("source")), base)
            if "workloads" in config:
                config["workloads"] = [absolute(w, base) for w in config["workloads"]]
            path = prefix_dir / "run.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            dropped = sorted(n for n, i in added.items() if i > k)
            print(f"prefix {k}/{len(patches)}: {patches[k - 1].name}"
                  + (f" (without CONFIG_{', CONFIG_'.join(dropped)})" if dropped else ""),
                  flush=True)  # fmt: skip
            started = time.monotonic()
            try:
                rc = subprocess.run([str(HARNESS), "run", "--config", str(path)]).returncode
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return 130
            elapsed = time.monotonic() - started
            results.append((k, rc, elapsed))
            verdict = "PASS" if rc == 0 else f"FAIL (harness run exit {rc})"
            print(f"prefix {k}/{len(patches)}: {verdict} in {elapsed:.0f} s", flush=True)
            if rc == 130:
                return 130
            if rc and not args.keep_going:
                break

    print()
    for k, rc, elapsed in results:
        print(f"  {k:2d}  {patches[k - 1].name:70.70s} {'pass' if rc == 0 else 'FAIL'}"
              f"  {elapsed:5.0f} s")  # fmt: skip
    failed = [k for k, rc, _ in results if rc]
    checked = [k for k, _, _ in results]
    asked = ",".join(map(str, order))
    if not failed and len(checked) == len(order):
        print(f"every prefix asked for ({asked}) builds, boots and passes "
              f"{args.config.name}'s scenarios")  # fmt: skip
        return 0
    print(f"prefixes failing: {failed or 'none'}; checked {len(checked)} of {len(order)} ({asked})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
