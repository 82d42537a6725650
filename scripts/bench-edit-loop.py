#!/usr/bin/env python3
"""The edit -> verdict loop against raw make and QEMU, side by side; prints figures.

  rerun:  `harness run --config CONFIG` with nothing changed (kernel cached)
          vs raw QEMU booting the same bzImage and initramfs.
  edit:   a fresh one-line change in the last patch of (a copy of) the series, then
          `harness run` on it (re-apply, build, boot, compare)
          vs the same kind of one-line change made in the tree by hand, raw
          `make bzImage` in the same build directory, and raw QEMU.

The change adds a new global to mm/mmzone.c (which the series does not touch) with a new
name each time, so no cached kernel or ccache entry matches and both sides compile one
file and relink. Pairs alternate which side goes first; the figures are medians. A pair
in which another process built in the same source tree (its lock was busy, or the series
branch moved) is discarded and run again. Both sides inherit this script's niceness.

With --scenario GLOB (repeatable) both sides run only those scenarios: the harness
selects them and raw QEMU boots the initramfs the harness built for them. A config
without a series (configs/thp.yaml) is edited through a one-patch series of its own.

Usage: nice -n 10 scripts/bench-edit-loop.py [--pairs 5] [--config configs/series.yaml]
                                             [--scenario GLOB]... [--skip-rerun|--skip-edit]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import build, cache, patches, runconfig, source  # noqa: E402

EDITED_FILE = "mm/mmzone.c"


SELECTION: list[str] = []  # --scenario options, for both sides


def harness_argv(results: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "--results", str(results), "run",
            "--config", str(config), *SELECTION]  # fmt: skip


def timed_harness(argv: list[str], env: dict[str, str]) -> tuple[float, str, int]:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    return time.monotonic() - start, proc.stdout + proc.stderr, proc.returncode


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.monotonic() - start


def copy_config(cfg: runconfig.RunConfig, series: Path, dest: Path) -> Path:
    """The run config with absolute paths and another series (JSON is YAML).

    Only the workload files are carried over: the benchmark wants a config without inline
    scenarios (configs/series.yaml has none).
    """
    if not cfg.workload_files:
        raise SystemExit(f"{cfg.path}: the benchmark needs a config with workload files")
    k, m = cfg.kernel, cfg.machine
    data = {
        "kernel": {"source": str(k.source), "series": str(series), "base_config": k.base_config,
                   "fragments": [str(f) for f in k.fragments], "cmdline": k.cmdline},
        "machine": {"accel": m.accel, "memory": f"{m.memory_mb}M", "cpus": m.cpus,
                    "boot_timeout": m.boot_timeout, "step_timeout": m.step_timeout},
        "workloads": [str(w) for w in cfg.workload_files],
    }  # fmt: skip
    dest.write_text(json.dumps(data, indent=1) + "\n")
    return dest


def mmzone_section(base_text: str, line: str) -> str:
    """A diff section appending `line` to mm/mmzone.c (its last three lines as context)."""
    lines = base_text.splitlines()
    start = len(lines) - 2
    context = "".join(f" {x}\n" for x in lines[-3:])
    return (
        f"diff --git a/{EDITED_FILE} b/{EDITED_FILE}\n--- a/{EDITED_FILE}\n+++ b/{EDITED_FILE}\n"
        f"@@ -{start},3 +{start},4 @@\n{context}+{line}\n"
    )


def fresh_line() -> str:
    return f"int folio_bench_edit_{time.time_ns()} __used;"


def tree_state(tree: Path) -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    state = tree / ".git" / patches.STATE_FILE
    return head + (state.read_text() if state.exists() else "")


def raw_qemu_argv(qemu_command: str, kernel: Path, data_log: Path) -> list[str]:
    argv = shlex.split(qemu_command)
    argv[argv.index("-kernel") + 1] = str(kernel)
    return [f"file:{data_log}" if a.startswith("file:") else a for a in argv]


def median_report(name: str, samples: list[float]) -> float:
    med = statistics.median(samples)
    shown = " ".join(f"{s:.1f}" for s in samples)
    print(f"  {name:<52} median {med:6.2f}s  ({shown})", flush=True)
    return med


def overhead_report(overheads: list[float], raw: list[float]) -> None:
    """The harness's own time, outside make and QEMU, against the raw side's median.

    On a loaded machine the guest's speed swings by 3x from one boot to the next, which
    buries a ratio of wall times; the harness's own work does not swing with it. Its
    median added to the raw side's median is what the ratio would be if the rest were
    equal.
    """
    med = statistics.median(overheads)
    shown = " ".join(f"{s:.1f}" for s in overheads)
    print(f"  {'harness time outside make and QEMU (boot phase)':<52} median {med:6.2f}s  "
          f"({shown})")  # fmt: skip
    raw_med = statistics.median(raw)
    print(f"  {'  => (raw median + that) / raw median':<52} {(raw_med + med) / raw_med:.3f}x")


def ratio(ours: list[float], raw: list[float]) -> float:
    """The ratio of the medians; the median of the pairs' own ratios is printed beside it
    (on a loaded machine the guest's own speed varies from pair to pair)."""
    pairs = [h / r for h, r in zip(ours, raw, strict=True)]
    print(f"  {'per-pair ratios':<52} median {statistics.median(pairs):6.3f}x ("
          + " ".join(f"{p:.2f}" for p in pairs) + ")", flush=True)  # fmt: skip
    return statistics.median(ours) / statistics.median(raw)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--config", default=str(ROOT / "configs" / "series.yaml"))
    parser.add_argument("--skip-rerun", action="store_true")
    parser.add_argument("--skip-edit", action="store_true")
    parser.add_argument("--scenario", action="append", default=[], metavar="GLOB")
    args = parser.parse_args()
    SELECTION.extend(a for g in args.scenario for a in ("--scenario", g))

    cfg = runconfig.load(Path(args.config))
    src = source.prepare(cfg.kernel.source, cfg.kernel.ref)
    work = Path(tempfile.mkdtemp(prefix="folio-bench-edit-"))
    results = work / "results"
    # Never evict anyone's kernels from a shared cache while measuring.
    env = {**os.environ, "FOLIO_HARNESS_CACHE_MAX": "off"}
    print(f"niceness {os.nice(0)}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}; "
          f"work in {work}", flush=True)  # fmt: skip

    # Warm up: the config's own kernel and an initramfs for its scenarios.
    elapsed, out, code = timed_harness(harness_argv(results, cfg.path), env)
    if code not in (0, 1):
        print(out)
        raise SystemExit(f"warm-up run failed with status {code}")
    meta = json.loads((results / "latest" / "metadata.json").read_text())
    qemu_command = meta["qemu_command"]
    cached_kernel = Path(meta["build"]["bzimage"])
    build_dir = Path(meta["build"]["build_dir"])
    print(f"warm-up: {elapsed:.1f}s; kernel {cached_kernel}; build dir {build_dir}", flush=True)

    figures: dict[str, float] = {}
    if not args.skip_rerun:
        print("no-change rerun (pairs alternate which side goes first):", flush=True)
        raw_argv = raw_qemu_argv(qemu_command, cached_kernel, work / "raw-data.log")
        ours_s, raw_s, extra_s = [], [], []

        def ours() -> None:
            t, out, _ = timed_harness(harness_argv(results, cfg.path), env)
            if "cached, no make" not in out:
                raise SystemExit("the rerun was not cached:\n" + out)
            ours_s.append(t)
            meta = json.loads((results / "latest" / "metadata.json").read_text())
            extra_s.append(t - meta["phase_seconds"]["boot"])

        def raw() -> None:
            raw_s.append(timed(raw_argv))

        for i in range(args.pairs):
            for side in (ours, raw) if i % 2 == 0 else (raw, ours):
                side()
        median_report("harness run (no change, cached kernel)", ours_s)
        median_report("raw QEMU, same kernel and initramfs", raw_s)
        figures["rerun"] = ratio(ours_s, raw_s)
        overhead_report(extra_s, raw_s)

    if not args.skip_edit:
        figures["edit"] = edit_loop(args.pairs, cfg, src, work, env, qemu_command, build_dir)

    print("ratios (harness / raw, ratio of the medians):")
    if "rerun" in figures:
        print(f"  no-change rerun   {figures['rerun']:.3f}x  (target <= 1.1)")
    if "edit" in figures:
        print(f"  edit -> verdict   {figures['edit']:.3f}x  (target <= 1.2)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def edit_loop(pairs: int, cfg: runconfig.RunConfig, src: source.SourceTree, work: Path,
              env: dict[str, str], qemu_command: str, build_dir: Path) -> float:  # fmt: skip
    series_dir = work / "kernel-patches"
    if cfg.kernel.series is not None:
        shutil.copytree(cfg.kernel.series.parent, series_dir)
    else:  # the baseline: a series of one patch, the one being edited
        series_dir.mkdir()
        (series_dir / "0001-bench-edit.patch").write_text(
            "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
            "From: folio-harness <bench@folio-harness.invalid>\n"
            "Date: Fri, 4 Dec 2026 12:00:00 +0000\nSubject: [PATCH] mm: bench edit\n\n---\n"
        )
        (series_dir / "series").write_text("0001-bench-edit.patch\n")
    series = patches.read_series(series_dir / "series")
    if any(EDITED_FILE in p.touched_files() for p in series.patches):
        raise SystemExit(f"the series touches {EDITED_FILE}; the benchmark edits it")
    last = series.patches[-1].path
    pristine_last = last.read_text()
    if not pristine_last.endswith("\n"):
        pristine_last += "\n"
    config = copy_config(cfg, series_dir / "series", work / "edit.yaml")
    base_text = subprocess.run(["git", "show", f"{source.BASE_TAG}:{EDITED_FILE}"],
                               cwd=src.tree, capture_output=True, text=True,
                               check=True).stdout  # fmt: skip
    results = work / "edit-results"
    make = build.make_command(src.tree, build_dir, os.cpu_count() or 1, ())
    make_env = {**os.environ, **build.make_env()}
    bzimage = build_dir / "arch/x86/boot/bzImage"
    raw_qemu = raw_qemu_argv(qemu_command, bzimage, work / "raw-edit-data.log")
    ours_s: list[float] = []
    raw_s: list[float] = []
    extra_s: list[float] = []
    last_state = [""]

    def ours() -> bool:
        last.write_text(pristine_last + mmzone_section(base_text, fresh_line()))
        t, out, code = timed_harness(harness_argv(results, config), env)
        if code not in (0, 1):
            raise SystemExit(f"harness run failed ({code}):\n{out}")
        meta = json.loads((results / "latest" / "metadata.json").read_text())
        if "waiting for another" in out or meta["build"]["cached"]:
            return False
        ours_s.append(t)
        extra_s.append(t - meta["phase_seconds"]["boot"] - meta["build"]["seconds"]["make"])
        make, boot = meta["build"]["seconds"]["make"], meta["phase_seconds"]["boot"]
        print(f"    harness {t:6.1f}s (make {make:.1f}s, boot {boot:.1f}s, "
              f"own {extra_s[-1]:.1f}s)", flush=True)  # fmt: skip
        return True

    def raw() -> bool:
        with cache.locked(f"source-{src.identity}"):  # not timed: waiting is not the tool's
            target = src.tree / EDITED_FILE
            committed = target.read_text()
            target.write_text(base_text + fresh_line() + "\n")
            try:
                t = timed(make, make_env)
            finally:
                subprocess.run(["git", "checkout", "--", EDITED_FILE], cwd=src.tree, check=True)
                assert target.read_text() == committed
            last_state[0] = tree_state(src.tree)
        q = timed(raw_qemu)
        raw_s.append(t + q)
        print(f"    raw     {t + q:6.1f}s (make {t:.1f}s, QEMU {q:.1f}s)", flush=True)
        return True

    # Warm-up pair: the tree moves to this series (all of it, once) and make settles.
    ours()
    raw()
    del ours_s[:], raw_s[:], extra_s[:]  # the warm-up pair is not a sample
    last_state[0] = tree_state(src.tree)
    print("edit -> verdict (a fresh one-line change each time):", flush=True)
    done = 0
    attempts = 0
    while done < pairs and attempts < pairs * 3:
        attempts += 1
        before_h, before_r, before_e = len(ours_s), len(raw_s), len(extra_s)
        ok = True
        for side in (ours, raw) if done % 2 == 0 else (raw, ours):
            if tree_state(src.tree) != last_state[0]:
                ok = False  # another build moved the tree: this pair is not comparable
            if not side():
                ok = False
            last_state[0] = tree_state(src.tree)
        if ok:
            done += 1
        else:
            del ours_s[before_h:], raw_s[before_r:], extra_s[before_e:]
            print("  (pair discarded: another build used the source tree; again)", flush=True)
            ours()  # settle: the tree back to this series
    if done < pairs:
        raise SystemExit(f"only {done} comparable pairs in {attempts} attempts")
    median_report("harness run after editing the last patch", ours_s)
    median_report("same edit in the tree + raw make + raw QEMU", raw_s)
    figure = ratio(ours_s, raw_s)
    overhead_report(extra_s, raw_s)
    return figure


if __name__ == "__main__":
    sys.exit(main())
