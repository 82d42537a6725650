#!/usr/bin/env python3
"""harness fuzz throughput: workloads per hour, and where the time goes.

    .venv/bin/python scripts/bench-fuzz.py [--config configs/series.yaml] [--count 400]
                                           [--batch 200] [--repeats 3]

Runs `harness fuzz` (fixed seed, nothing shrunk) `--repeats` times on a cached kernel and
prints the median workloads per hour against the issue's bar (10,000/hour), with the
campaign's time split into host work (generate, model, judge, initramfs), guest boots and
guest jobs. Side by side it measures the raw guest: one boot of the same kernel running the
same number of jobs that do nothing (`true`) and the same generated scripts run by mmwork
alone, with no judge, so the guest's share per workload is plain: boot, the /init job loop,
and mmwork's own work. Exit 0 when the median meets the bar, 1 when not.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import initramfs, machine, report, run, runconfig, workload  # noqa: E402
from harness.campaign import fuzz, generate  # noqa: E402

BAR_PER_HOUR = 10_000


def campaign(
    cfg: runconfig.RunConfig, results: Path, seed: int, count: int, batch: int
) -> dict[str, Any]:
    options = fuzz.FuzzOptions(seed=seed, count=count, batch=batch, shrink=False)
    run.execute(
        cfg,
        results,
        ["bench-fuzz.py"],
        progress=report.Progress(io.StringIO()),
        body=fuzz.fuzz_body(options),
    )
    return json.loads((results / "latest" / "fuzz" / "summary.json").read_text())


def raw_boot(
    cfg: runconfig.RunConfig, bzimage: Path, accel: str, jobs: list[initramfs.Job], work: Path
) -> tuple[float, fuzz.Timing]:
    """One boot of these jobs with nothing but QEMU: (wall seconds, the guest's split)."""
    image = initramfs.build(work / "raw.cpio", run.GUEST_TESTS, jobs, fuzz.GUEST)
    request = machine.BootRequest(
        kernel=bzimage,
        initramfs=image,
        console_log=work / "raw-console.log",
        data_log=work / "raw-data.log",
        accel=accel,
        memory_mb=cfg.machine.memory_mb,
        cpus=cfg.machine.cpus,
        cmdline=cfg.kernel.cmdline,
        boot_timeout=cfg.machine.boot_timeout,
        job_timeout=120,
        jobs=tuple(j.name for j in jobs),
    )
    runner = fuzz.GuestRunner(bzimage, cfg, accel, work, machine.QemuMachine(), 120, print)
    started = time.monotonic()
    runner.boot_and_time(request)
    wall = time.monotonic() - started
    return wall, runner.timing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "series.yaml"))
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()
    cfg = runconfig.load(Path(args.config))

    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        work = Path(tmp)
        rates, summaries = [], []
        for i in range(args.repeats):
            summary = campaign(cfg, work / f"r{i}", args.seed, args.count, args.batch)
            summaries.append(summary)
            rates.append(summary["workloads_per_hour"])
            print(
                f"run {i + 1}: {summary['workloads']} workloads in {summary['wall_seconds']}s"
                f" = {summary['workloads_per_hour']}/hour ({summary['boots']} boots)"
            )
        median = statistics.median(rates)
        split = summaries[rates.index(median)]["seconds"]
        wall = summaries[rates.index(median)]["wall_seconds"]
        host = split["generate"] + split["model"] + split["judge"] + split["initramfs"]
        guest = split["boot"] + split["jobs"] + split["shutdown"]
        print(
            f"\nharness fuzz: median {median:.0f} workloads/hour "
            f"(bar {BAR_PER_HOUR}), {args.count} workloads per run, batch {args.batch}"
        )
        print(
            f"  wall {wall:.1f}s = guest {guest:.1f}s (boot {split['boot']:.1f}, "
            f"jobs {split['jobs']:.1f}, shutdown {split['shutdown']:.1f}) + host "
            f"{host:.1f}s (generate {split['generate']:.1f}, model {split['model']:.1f}, "
            f"judge {split['judge']:.1f}, initramfs {split['initramfs']:.1f})"
        )
        qemu_cpu = split["qemu_cpu"] / args.count
        host_cpu = split["host_cpu"] / args.count
        print(
            f"  CPU per workload: QEMU {qemu_cpu * 1000:.0f} ms, harness {host_cpu * 1000:.0f} ms;"
            f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. Given the"
            f" CPU they used alone (no other load), the campaign would run "
            f"{3600 / (qemu_cpu + host_cpu):.0f} workloads/hour"
        )
        print(
            f"  per workload: {wall / args.count * 1000:.0f} ms wall, guest job median "
            f"{split['job_median'] * 1000:.0f} ms"
        )

        # The raw guest, side by side: the same kernel, the job loop with empty jobs, and
        # the same scripts under mmwork with nobody judging.
        built = run.prepare_kernel(cfg, work, report.Phases(report.Progress(io.StringIO())))
        accel, _ = machine.resolve_accel(
            cfg.machine.accel,
            built.bzimage,
            initramfs.build(work / "p.cpio", run.GUEST_TESTS, []),
            work,
        )
        n = min(args.batch, args.count)
        empty = [initramfs.Job(f"j{i}", command="true") for i in range(n)]
        wall_empty, t_empty = raw_boot(cfg, built.bzimage, accel, empty, work)
        scripts = []
        for i in range(n):
            _, sc = generate.generate(args.seed, i)
            scripts.append(initramfs.Job(sc.name, script=workload.guest_script(sc)))
        wall_raw, t_raw = raw_boot(cfg, built.bzimage, accel, scripts, work)
        per_empty = t_empty.jobs / n * 1000
        per_raw = t_raw.jobs / n * 1000
        print(f"\nraw guest, {n} jobs in one boot (no harness judge):")
        print(
            f"  empty jobs ('true'): boot {t_empty.boot:.1f}s, {per_empty:.0f} ms/job "
            f"(the /init loop and its markers), wall {wall_empty:.1f}s"
        )
        print(
            f"  mmwork, same scripts: boot {t_raw.boot:.1f}s, {per_raw:.0f} ms/job, wall "
            f"{wall_raw:.1f}s -> at most {3600 / (wall_raw / n):.0f} workloads/hour"
        )
        harness_per = wall / args.count
        print(f"  harness fuzz / raw mmwork per workload: {harness_per / (wall_raw / n):.2f}x")
    return 0 if median >= BAR_PER_HOUR else 1


if __name__ == "__main__":
    sys.exit(main())
