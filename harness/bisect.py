"""Bisect: the first patch of a series at which a scenario starts failing.

Each prefix of the series is a full run (build, boot, compare) of the selected scenarios.
The whole series must fail and the known-good prefix (--good N, the base by default) must
pass; between them a binary search runs the fewest prefixes. Prefixes are applied
incrementally (patches.apply keeps the commits of the common part) and all are built in
one build directory, the whole series', so each build recompiles only what the patches
between two prefixes change. Options requested by the fragments that a prefix does not
define yet (its Kconfig comes with a later patch) are not errors here.

Every prefix's run keeps its own results directory under results/<id>-bisect-<config>/,
with bisect.json naming each step's verdict and the first bad patch.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import machine, patches, report, run, runconfig
from harness.errors import ConfigError, HarnessError


@dataclass
class Step:
    prefix: int  # number of patches applied
    code: int  # run's exit status
    run_dir: Path | None

    @property
    def bad(self) -> bool:
        return self.code in (run.EXIT_FAIL, run.EXIT_ERROR)


def bisect(
    cfg: runconfig.RunConfig,
    results_root: Path,
    argv: list[str],
    good: int = 0,
    run_prefix: Callable[[int], Step] | None = None,
) -> int:
    series = patches.read_series(cfg.kernel.series)
    n = len(series.patches)
    if not n:
        raise ConfigError(f"{cfg.path}: kernel.series names no patches: nothing to bisect")
    if not 0 <= good < n:
        raise ConfigError(f"--good {good}: must be a prefix length from 0 to {n - 1}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    home = results_root / f"{stamp}-bisect-{cfg.path.stem}"
    home.mkdir(parents=True)
    # The whole series is run first, in its own build directory; every prefix after it is
    # built there too.
    build_dir: list[Path] = []
    steps: list[Step] = []
    summary: dict[str, object] = {
        "config": str(cfg.path),
        "series": str(series.path),
        "good": good,
        "patches": [p.path.name for p in series.patches],
    }

    def default_run(prefix: int) -> Step:
        variant = run.KernelVariant(
            series.prefix(prefix), build_dir[0] if build_dir else None, lenient_kconfig=True
        )

        def body(c: runconfig.RunConfig, state: run.RunState, phases: report.Phases,
                 vm: machine.Machine) -> int:  # fmt: skip
            return run._execute(c, state, phases, vm, variant)

        code = run.execute(cfg, home, argv, body=body)
        run_dir = (home / "latest").resolve()
        if not build_dir:
            with contextlib.suppress(OSError, ValueError, KeyError):
                meta = json.loads((run_dir / "metadata.json").read_text())
                build_dir.append(Path(meta["build"]["build_dir"]))
        return Step(prefix, code, run_dir)

    def test(prefix: int) -> Step:
        what = f"patch {prefix}: {series.patches[prefix - 1].path.name}" if prefix else "base"
        print(f"== bisect: {prefix} of {n} patches applied (up to {what})", flush=True)
        step = (run_prefix or default_run)(prefix)
        if step.code == run.EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        steps.append(step)
        print(f"== bisect: {prefix} of {n}: {'BAD' if step.bad else 'good'}", flush=True)
        summary["steps"] = [
            {"prefix": s.prefix, "bad": s.bad, "status": s.code, "run": str(s.run_dir)}
            for s in steps
        ]
        report.write_json(home / "bisect.json", summary)
        return step

    try:
        if not test(n).bad:
            print(f"bisect: the whole series passes ({n} patches): nothing to find")
            summary["first_bad"] = None
            report.write_json(home / "bisect.json", summary)
            return run.EXIT_PASS
        if test(good).bad:
            raise HarnessError(
                f"bisect: the scenarios already fail with {good} patches applied "
                f"({'the base kernel' if not good else series.patches[good - 1].path.name}); "
                "pass --good N with a prefix that passes"
            )
        lo, hi = good, n  # lo passes, hi fails
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if test(mid).bad:
                hi = mid
            else:
                lo = mid
    except KeyboardInterrupt:
        print(f"bisect: interrupted; steps so far in {home / 'bisect.json'}")
        return run.EXIT_INTERRUPTED
    first_bad = series.patches[hi - 1]
    summary["first_bad"] = {"index": hi, "patch": str(first_bad.path)}
    report.write_json(home / "bisect.json", summary)
    print(f"\nbisect: the first bad patch is {hi} of {n}: {first_bad.path}")
    print(f"  passes with {hi - 1} patches applied, fails with {hi} "
          f"(runs: {home})\n")  # fmt: skip
    print(_patch_text(first_bad.path))
    return run.EXIT_FAIL


def _patch_text(path: Path) -> str:
    """The patch's subject, diffstat and diff, without the mail headers around them."""
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    subject = next((line for line in lines if line.startswith("Subject:")), "")
    body_start = next((i for i, line in enumerate(lines) if line == "---"), 0)
    return "\n".join([subject, *lines[body_start:]]).rstrip() + "\n"
