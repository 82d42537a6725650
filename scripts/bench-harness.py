#!/usr/bin/env python3
"""Benchmarks of the harness against the raw tools it drives; prints figures, asserts nothing.

  boot:    `harness boot -- true` (cached kernel) vs raw QEMU on the same kernel+initramfs
  run:     `harness run --config configs/thp.yaml` with everything cached
  rebuild: touch mm/memory.c in the cached source tree, then `harness build` of a patched
           series vs raw `make` in the same build directory

Usage: scripts/bench-harness.py [--repeat N] [--skip-rebuild]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import build, initramfs, machine, patches, runconfig, source  # noqa: E402


def timed(argv: list[str], **kwargs: object) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   **kwargs)  # type: ignore[call-overload]  # fmt: skip
    return time.monotonic() - start


def report(name: str, samples: list[float]) -> None:
    print(f"{name:<44} median {statistics.median(samples):6.2f}s  "
          f"min {min(samples):6.2f}s  (n={len(samples)})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-rebuild", action="store_true")
    args = parser.parse_args()
    harness = [sys.executable, "-m", "harness.cli", "--results", "/tmp/folio-bench-results"]
    smoke = str(ROOT / "configs" / "smoke.yaml")

    # Warm everything once.
    subprocess.run([*harness, "build", "--config", smoke], check=True, stdout=subprocess.DEVNULL)

    cfg = runconfig.load(Path(smoke))
    src = source.prepare(cfg.kernel.source)
    result = build.build(
        build.BuildRequest(cfg.kernel, src, patches.read_series(None)), Path("/tmp/bench.log")
    )
    image = initramfs.build(
        Path("/tmp/folio-bench.cpio"), ROOT / "guest-tests", [initramfs.Job("c", command="true")]
    )
    request = machine.BootRequest(
        kernel=result.bzimage, initramfs=image, console_log=Path("/tmp/bench-console.log"),
        data_log=None, accel="tcg", memory_mb=1024, cpus=2, cmdline="", boot_timeout=60,
        job_timeout=60,
    )  # fmt: skip
    raw_qemu = machine.qemu_argv(request)

    report("raw QEMU: boot, run 'true', power off", [
        timed(raw_qemu, stdin=subprocess.DEVNULL) for _ in range(args.repeat)])  # fmt: skip
    report("harness boot -- true (cached kernel)", [
        timed([*harness, "boot", "--config", smoke, "--", "true"])
        for _ in range(args.repeat)])  # fmt: skip
    report("harness run --config configs/thp.yaml (cached)", [
        timed([*harness, "run", "--config", str(ROOT / "configs" / "thp.yaml")])
        for _ in range(args.repeat)])  # fmt: skip

    if not args.skip_rebuild:
        memory_c = src.tree / "mm" / "memory.c"
        make = build.make_command(src.tree, result.build_dir, 2, ())
        env = {**os.environ, **build.make_env()}
        raw, ours = [], []
        for _ in range(args.repeat):
            memory_c.touch()
            raw.append(timed(make, env=env))
            memory_c.touch()
            ours.append(timed([*harness, "build", "--force", "--config", smoke]))
        report("raw make after touching mm/memory.c", raw)
        report("harness build after touching mm/memory.c", ours)
    return 0


if __name__ == "__main__":
    sys.exit(main())
