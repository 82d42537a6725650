"""Serialisers and progress output, kept apart from the logic that produces results."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from harness import cache


class Bar:
    """One counted activity (make's steps, the guest's scenarios or tests, a campaign's
    runs): a rich progress bar on a terminal, an occasional plain line otherwise, so CI logs
    stay readable. Use it as `with progress.bar("fuzz: programs", 200) as bar:
    bar.advance()`; `progress.say` lines print above the bar meanwhile."""

    PLAIN_EVERY = 30.0  # seconds between plain progress lines

    def __init__(self, progress: Progress, description: str, total: int | None) -> None:
        self.progress = progress
        self.description = description
        self.total = total
        self.done = 0
        self._task: Any = None
        self._said = time.monotonic()

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._task is not None:
            self.progress._live.update(self._task, total=total)

    def advance(self, steps: int = 1, note: str = "") -> None:
        self.done += steps
        if self._task is not None:
            shown = f"{self.description} {note}".rstrip()
            self.progress._live.update(self._task, advance=steps, description=shown)
        elif time.monotonic() - self._said >= self.PLAIN_EVERY:
            self._said = time.monotonic()
            of = f"/{self.total}" if self.total else ""
            self.progress.say(f"{self.description}: {self.done}{of}")


class Progress:
    """One line per phase event, prefixed by the time since the run started; counted
    activities get a bar (rich) when the output is a terminal."""

    def __init__(self, out: TextIO | None = None, fancy: bool | None = None) -> None:
        self._out = out or sys.stdout
        self._start = time.monotonic()
        if fancy is None:
            fancy = self._out.isatty() and os.environ.get("TERM") != "dumb"
        self.fancy = fancy
        self._live: Any = None  # a rich.progress.Progress while a bar is shown

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def say(self, message: str) -> None:
        line = f"[{self.elapsed():7.1f}s] {message}"
        if self._live is not None:  # above the bar, which rich redraws below
            self._live.console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        self._out.write(line + "\n")
        self._out.flush()

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None = None) -> Iterator[Bar]:
        bar = Bar(self, description, total)
        if not self.fancy or self._live is not None:
            yield bar
            return
        live = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), transient=True,
            console=Console(file=self._out, force_terminal=True),  # fancy: a terminal
        )  # fmt: skip
        with live:
            self._live = live
            bar._task = live.add_task(description, total=total)
            try:
                yield bar
            finally:
                self._live = None


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
        lines.append(f"  {s['name']:<{width}}  {s['verdict'].upper():<7}{reason}")
    return "\n".join(lines)


def rmap_table(rmap: dict[str, dict[str, int]]) -> str:
    """rmap calls and pages per operation, with pages per call (what batching buys)."""
    width = max(len(op) for op in rmap)
    lines = []
    for op, counts in rmap.items():
        calls, pages = counts["calls"], counts["pages"]
        ratio = f"{pages / calls:6.2f}" if calls else "     -"
        lines.append(f"  {op:<{width}}  calls={calls:<8} pages={pages:<8} pages/call={ratio}")
    return "\n".join(lines)
