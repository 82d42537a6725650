"""Console log classification: a pure parser fed by a line stream (kunit_parser style).

It knows the harness markers (which job was running) and the shapes of kernel splats:
panic, Oops, BUG, WARNING, "Bad page state", soft lockup, hung task, RCU stall. Each splat
is reported with the job that was running, its first lines and its call trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.initramfs import MARK_BEGIN, MARK_BOOTED, MARK_DONE, MARK_END

_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Order matters: the first pattern that matches a line names the splat.
SPLAT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("bad_page", re.compile(r"BUG: Bad page (state|map)")),
    ("soft_lockup", re.compile(r"BUG: soft lockup|watchdog: BUG: soft lockup")),
    ("hung_task", re.compile(r"INFO: task .* blocked for more than")),
    ("rcu_stall", re.compile(r"rcu: INFO: .*detected stalls?|self-detected stall")),
    ("lockdep", re.compile(r"WARNING: (possible circular locking|possible recursive locking|"
                           r"inconsistent lock state|suspicious RCU usage)")),
    ("oops", re.compile(r"^Oops: |BUG: unable to handle|general protection fault")),
    ("bug", re.compile(r"kernel BUG at |^BUG: |VM_BUG_ON")),
    ("warning", re.compile(r"^WARNING: CPU: \d+ PID: \d+ at |^------------\[ cut here \]")),
    ("panic", re.compile(r"Kernel panic - not syncing")),
)  # fmt: skip

_TRACE_START = re.compile(r"^(Call Trace:|<TASK>)")
_TRACE_END = re.compile(r"^(</TASK>|---\[ end trace|Kernel Offset:|RIP: 0033)")
_TRACE_ENTRY = re.compile(r"^(\? )?[\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+|^</?(IRQ|NMI|SOFTIRQ)>")
# The OOM killer is not a splat: it is the guest running out of memory, an environment.
_OOM_KILL = re.compile(r"Out of memory: Killed process \d+|invoked oom-killer")
_FATAL = frozenset({"panic", "oops", "bug", "soft_lockup", "bad_page", "rcu_stall", "hung_task"})


@dataclass
class Splat:
    kind: str
    job: str | None  # the job (scenario) running when it happened; None: during boot
    line: int  # 1-based line in console.log
    headline: str
    excerpt: list[str] = field(default_factory=list)  # first lines of the splat
    call_trace: list[str] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        return self.kind in _FATAL

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "job": self.job,
            "line": self.line,
            "headline": self.headline,
            "excerpt": self.excerpt,
            "call_trace": self.call_trace,
        }


@dataclass
class ConsoleReport:
    booted: bool = False
    uname: str | None = None
    cpus: int | None = None
    done: bool = False  # /init reached the end of its jobs
    started: list[str] = field(default_factory=list)
    finished: dict[str, int] = field(default_factory=dict)  # job -> shell status
    splats: list[Splat] = field(default_factory=list)
    current_job: str | None = None
    oom_kills: list[tuple[str | None, int]] = field(default_factory=list)  # (job, line)

    @property
    def fatal(self) -> Splat | None:
        return next((s for s in self.splats if s.fatal), None)


def clean(line: str) -> str:
    """A console line without CR, ANSI escapes and the printk timestamp."""
    line = _ANSI.sub("", line.rstrip("\r\n").replace("\r", ""))
    return _TIMESTAMP.sub("", line)


class ConsoleParser:
    """Incremental: feed lines as they arrive; `report` is always up to date."""

    EXCERPT_LINES = 12
    TRACE_LINES = 40

    def __init__(self) -> None:
        self.report = ConsoleReport()
        self._lineno = 0
        self._open: Splat | None = None
        self._in_trace = False

    def feed(self, raw: str) -> None:
        self._lineno += 1
        line = clean(raw)
        if not line.strip():
            return  # serial CR/LF doubling makes empty lines; they carry nothing
        self._markers(line)
        if _OOM_KILL.search(line):
            self.report.oom_kills.append((self.report.current_job, self._lineno))
        kind = next((k for k, pat in SPLAT_PATTERNS if pat.search(line)), None)
        if kind is not None and not self._continues_open_splat(kind):
            self._open = Splat(kind, self.report.current_job, self._lineno, line.strip())
            self._in_trace = False
            self.report.splats.append(self._open)
        elif kind == "panic" and self._open is not None and self._open.kind != "panic":
            # A WARNING that ends in a panic (panic_on_warn) is worse than the warning.
            self._open.kind = "panic" if self._open.kind == "warning" else self._open.kind
        if self._open is None:
            return
        if len(self._open.excerpt) < self.EXCERPT_LINES:
            self._open.excerpt.append(line)
        if _TRACE_START.match(line.strip()):
            self._in_trace = True
            return
        if self._in_trace:
            stripped = line.strip()
            if _TRACE_END.match(stripped) or not _TRACE_ENTRY.match(stripped):
                self._in_trace = False
                if stripped.startswith("---[ end trace") or stripped.startswith("</TASK>"):
                    self._open = None
            elif len(self._open.call_trace) < self.TRACE_LINES:
                self._open.call_trace.append(stripped)

    def _continues_open_splat(self, kind: str) -> bool:
        """'cut here' is followed by the WARNING line of the same splat, not a new one."""
        return (
            self._open is not None
            and self._open.kind == "warning"
            and kind == "warning"
            and len(self._open.excerpt) <= 2
        )

    def _markers(self, line: str) -> None:
        report = self.report
        words = line.split()
        if not words:
            return
        if MARK_BOOTED in words:
            i = words.index(MARK_BOOTED)
            report.booted = True
            report.uname = words[i + 1] if len(words) > i + 1 else None
            for w in words[i + 1 :]:
                if m := re.match(r"cpus=(\d+)", w):
                    report.cpus = int(m.group(1))
        elif MARK_BEGIN in words and len(words) > words.index(MARK_BEGIN) + 1:
            job = words[words.index(MARK_BEGIN) + 1]
            report.current_job = job
            report.started.append(job)
        elif MARK_END in words and len(words) > words.index(MARK_END) + 1:
            i = words.index(MARK_END)
            status = next((w[7:] for w in words[i + 2 :] if w.startswith("status=")), "")
            report.finished[words[i + 1]] = int(status) if status.isdigit() else -1
            report.current_job = None
        elif MARK_DONE in words:
            report.done = True


def parse_console(lines: Iterable[str]) -> ConsoleReport:
    parser = ConsoleParser()
    for line in lines:
        parser.feed(line)
    return parser.report
