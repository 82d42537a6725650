"""KCIDB v5 writer: checkout (source and series), builds (config, log, duration), tests.

The data follows the Kernel CI common database's I/O schema, version 5.0 (kcidb-io validates
it in the tests; it is valid against every later 5.x too). `harness report --kcidb RUN`
prints it for `kcidb-submit`. Every case and subtest is a test, at the dot-separated path
folio_harness.<case>.<subtest>..., with its model-vs-kernel values under misc.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from harness import cache
from harness.formats.cases import Kernel, RunReport

ORIGIN = "folio_harness"
VERSION = {"major": 5, "minor": 0}
MAX_EXCERPT = 16384  # the schema's maxLength for log_excerpt

STATUS = {"pass": "PASS", "fail": "FAIL", "timeout": "FAIL", "crash": "FAIL", "error": "ERROR",
          "environment": "ERROR", "skip": "SKIP", "not-run": "MISS"}  # fmt: skip
_BUILD_STATUS = {"pass": "PASS", "fail": "FAIL", "not-run": "MISS"}
_STABLE = re.compile(r"^(\d+\.\d+)\.\d+")  # 6.1.192 -> the linux-6.1.y stable tree


def path_segment(name: str) -> str:
    """A test path component: KCIDB allows [a-zA-Z0-9_-] only."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_-]", "_", name)).strip("_") or "unnamed"


def _excerpt(text: str) -> str:
    text = text.replace("\0", "")
    return text if len(text) <= MAX_EXCERPT else text[-MAX_EXCERPT:]


def _no_nulls(value: Any) -> Any:
    """KCIDB allows no null property: drop them (an unobserved value is simply absent)."""
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value if v is not None]
    return value


def patchset_hash(kernel: Kernel) -> str:
    """sha256 over each patch's newline-terminated sha256, in order ('' without patches)."""
    if not kernel.patches:
        return ""
    joined = "".join(f"{p['sha256']}\n" for p in kernel.patches)
    return hashlib.sha256(joined.encode()).hexdigest()


def _checkout_id(kernel: Kernel) -> str:
    what = json.dumps([kernel.source, kernel.head, kernel.series_identity], sort_keys=True)
    return f"{ORIGIN}:{hashlib.sha256(what.encode()).hexdigest()[:20]}"


def _build_id(report: RunReport, kernel: Kernel) -> str:
    return f"{ORIGIN}:{kernel.build_key or f'{report.run_id}-{kernel.label}'}"


def _checkout(report: RunReport, kernel: Kernel) -> dict[str, Any]:
    series = (f" + {Path(kernel.series).parent.name}/{Path(kernel.series).name} "
              f"({len(kernel.patches)} patches)") if kernel.series else ""  # fmt: skip
    # The commit built is the harness's own import of the source with the series applied,
    # not an upstream commit, so it goes to misc rather than git_commit_hash (which names
    # the base a reader could check out).
    checkout: dict[str, Any] = {
        "id": _checkout_id(kernel),
        "origin": ORIGIN,
        "patchset_hash": patchset_hash(kernel),
        "comment": f"Linux {kernel.version or '?'} from {kernel.source or '?'}{series}",
        "misc": _no_nulls({"source": kernel.source, "built_commit": kernel.head or None,
                           "series": kernel.series, "series_identity": kernel.series_identity,
                           "patches": [p["path"] for p in kernel.patches]}),
    }  # fmt: skip
    if m := _STABLE.match(kernel.version):
        checkout["tree_name"] = f"linux-{m.group(1)}.y"
    if report.started:
        checkout["start_time"] = report.started
    if kernel.status == "pass":
        checkout["valid"] = True
    return checkout


def _build(report: RunReport, kernel: Kernel, run_dir: Path | None) -> dict[str, Any]:
    build: dict[str, Any] = {
        "id": _build_id(report, kernel),
        "checkout_id": _checkout_id(kernel),
        "origin": ORIGIN,
        "architecture": "x86_64",
        "status": _BUILD_STATUS.get(kernel.status, "ERROR"),
        "comment": f"{kernel.label}: {kernel.config or 'no fragments'}",
        "misc": _no_nulls({"label": kernel.label, "build_key": kernel.build_key or None,
                           "config_sha256": kernel.config_sha256 or None,
                           "cached": kernel.cached, "build_log": kernel.build_log}),
    }  # fmt: skip
    if kernel.config:
        build["config_name"] = kernel.config
    if kernel.toolchain:
        build["compiler"] = kernel.toolchain
    if kernel.build_seconds is not None:
        build["duration"] = float(kernel.build_seconds)
    if report.started:
        build["start_time"] = report.started
    if run_dir is not None and kernel.build_log and (run_dir / kernel.build_log).exists():
        tail = (run_dir / kernel.build_log).read_bytes()[-4096:].decode(errors="replace")
        build["log_excerpt"] = _excerpt(tail)
    return build


def _tests(report: RunReport) -> list[dict[str, Any]]:
    kernels = {k.label: k for k in report.kernels}
    first = report.kernels[0] if report.kernels else Kernel()
    environment = {"comment": _environment(report.machine)} if report.machine else None
    seen: set[str] = set()
    tests = []
    for case in report.cases:
        for names, node in case.walk():
            path = ".".join([ORIGIN, *(path_segment(n) for n in names)])
            unique, n = path, 1
            while unique in seen:
                n += 1
                unique = f"{path}_{n}"
            seen.add(unique)
            kernel = kernels.get(node.kernel or case.kernel, first)
            test: dict[str, Any] = {
                "id": f"{ORIGIN}:{report.run_id}:{unique}",
                "build_id": _build_id(report, kernel),
                "origin": ORIGIN,
                "path": unique,
                "status": STATUS[node.status],
                "comment": node.name,
            }
            if environment:
                test["environment"] = environment
            excerpt = "\n".join(
                x for x in (node.message, node.console, "\n".join(node.diagnostics)) if x
            )
            if excerpt:
                test["log_excerpt"] = _excerpt(excerpt)
            if node.seconds is not None:
                test["duration"] = float(node.seconds)
            if report.started:
                test["start_time"] = report.started
            misc = _no_nulls({**node.values, "status": node.status, "log": node.log})
            test["misc"] = misc
            tests.append(test)
    return tests


def _environment(machine: dict[str, Any]) -> str:
    return (
        f"QEMU x86_64 ({machine.get('accel', '?')}), {machine.get('cpus_requested', '?')} CPUs, "
        f"{machine.get('memory_mb', '?')} MiB; guest {machine.get('uname') or '?'}"
    )


def render_data(report: RunReport, run_dir: Path | None = None) -> dict[str, Any]:
    checkouts: dict[str, dict[str, Any]] = {}
    for kernel in report.kernels:
        checkouts.setdefault(_checkout_id(kernel), _checkout(report, kernel))
    return {
        "version": VERSION,
        "checkouts": list(checkouts.values()),
        # Two labels on one build key are one build (the same kernel, cached).
        "builds": list({b["id"]: b for b in (_build(report, k, run_dir)
                                             for k in report.kernels)}.values()),
        "tests": _tests(report),
    }


def render(report: RunReport, run_dir: Path | None = None) -> str:
    # One test per line: greppable, and written by json's C encoder (indenting the whole
    # document falls back to the pure-Python one, five times slower on a 90-scenario run).
    data = render_data(report, run_dir)
    head = {key: value for key, value in data.items() if key != "tests"}
    tests = ",\n  ".join(json.dumps(test) for test in data["tests"])
    tail = f'"tests": [\n  {tests}\n ]' if tests else '"tests": []'
    return json.dumps(head)[:-1] + f", {tail}}}\n"


def write(run_dir: Path, report: RunReport) -> Path:
    path = run_dir / "kcidb.json"
    cache.write_atomic(path, render(report, run_dir))
    return path
