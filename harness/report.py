"""Serialisers and progress output, kept apart from the logic that produces results."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from harness import cache


class Progress:
    """One line per phase event, prefixed by the time since the run started."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def say(self, message: str) -> None:
        self._out.write(f"[{self.elapsed():7.1f}s] {message}\n")
        self._out.flush()


class Phases:
    """Per-phase wall times, written to metadata.json."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def start(self, name: str, what: str) -> float:
        self.progress.say(f"{name}: {what}")
        return time.monotonic()

    def finish(self, name: str, started: float, summary: str) -> None:
        took = time.monotonic() - started
        self.seconds[name] = round(took, 3)
        self.progress.say(f"{name}: {summary} ({took:.1f}s)")


def write_json(path: Path, data: Any) -> None:
    cache.write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_json_lines(path: Path, data: dict[str, Any]) -> None:
    """A large JSON object written fast: one top-level key per line, and a list value one
    item per line, each compact.

    results.json holds every probed page (20 MB for configs/thp.yaml); indenting all of it
    takes Python's pure-Python encoder 5 s, the C encoder a tenth of that. One scenario per
    line still reads and greps well.
    """
    lines = []
    for i, (key, value) in enumerate(data.items()):
        comma = "," if i < len(data) - 1 else ""
        if isinstance(value, list) and value:
            items = ",\n  ".join(json.dumps(item) for item in value)
            lines.append(f" {json.dumps(key)}: [\n  {items}\n ]{comma}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}{comma}")
    cache.write_atomic(path, "{\n" + "\n".join(lines) + "\n}\n")


def point_latest(results_root: Path, run_dir: Path) -> None:
    link = results_root / "latest"
    tmp = results_root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def summary_table(scenarios: list[dict[str, Any]]) -> str:
    """Plain-text verdict table for the terminal."""
    if not scenarios:
        return "(no scenarios)"
    width = max(len(s["name"]) for s in scenarios)
    lines = []
    for s in scenarios:
        reason = f"  {s['reason']}" if s.get("reason") else ""
        lines.append(f"  {s['name']:<{width}}  {s['verdict'].upper():<5}{reason}")
    return "\n".join(lines)
