"""TAP 13 / KTAP 1 as the 6.1 kselftests print it: a pure parser fed by a line stream.

It reads what tools/testing/selftests/kselftest.h and the KTAP spec produce:

    TAP version 13                      KTAP version 1
    1..N                                1..N  /  1..0 # SKIP reason
    ok 3 desc                           not ok 4 desc
    ok 5 # SKIP reason                  ok 6 # XFAIL reason
    not ok 7 # error reason             Bail out! reason
    # diagnostic                        # Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0

and nested subtests, which KTAP indents (two or four spaces, or a "# " prefix as kselftest's
runner adds) and may announce with "# Subtest: name"; the parent's own result line closes
them. Anything else (a test's stderr, printf without TAP) is kept as plain output.

`judge` turns a parsed stream plus how the program ended into one outcome, because many 6.1
vm tests print no TAP and speak only through their exit status (4 = KSFT_SKIP).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

KSFT_PASS, KSFT_FAIL, KSFT_XFAIL, KSFT_XPASS, KSFT_SKIP = 0, 1, 2, 3, 4
OUTCOMES = ("pass", "fail", "skip", "timeout", "crash", "not-run")

_VERSION = re.compile(r"^(TAP|KTAP) version (\d+)\s*$")
_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(\S+)\s*(.*))?$")
_RESULT = re.compile(r"^(not ok|ok)\b(?:\s+(\d+))?\s*(?:-\s+)?(.*)$")
_BAIL = re.compile(r"^Bail out!\s*(.*)$")
_SUBTEST = re.compile(r"^#\s*Subtest:\s*(.*)$")
_TOTALS = re.compile(r"^#\s*Totals:\s*(.*)$")
_DIRECTIVE = re.compile(r"(?:^|\s)#\s*(SKIP|TODO|XFAIL|XPASS|error)\b\s*(.*)$", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Case:
    """One result line ('ok N desc # DIRECTIVE reason') and the subtests it closes."""

    number: int | None
    description: str
    ok: bool
    directive: str | None = None  # SKIP, TODO, XFAIL, XPASS, ERROR
    reason: str = ""
    line: int = 0  # 1-based line in the stream
    subtests: list[Case] = field(default_factory=list)

    @property
    def status(self) -> str:
        """pass | fail | skip | xfail | xpass | error."""
        if self.directive == "SKIP":
            return "skip"
        if self.directive == "XFAIL":
            return "xfail"
        if self.directive == "XPASS":
            return "xpass"
        if self.directive == "ERROR":
            return "error"
        if self.directive == "TODO":
            return "pass" if self.ok else "xfail"
        return "pass" if self.ok else "fail"

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "number": self.number,
            "description": self.description,
            "status": self.status,
        }
        if self.reason and self.reason != self.description:
            data["reason"] = self.reason
        if self.subtests:
            data["subtests"] = [c.to_json() for c in self.subtests]
        return data


@dataclass
class Stream:
    """A parsed TAP/KTAP stream (or a nested subtest's part of one)."""

    name: str = ""
    version: str | None = None  # 'TAP 13', 'KTAP 1'
    plan: int | None = None
    plan_skip: str | None = None  # '1..0 # SKIP reason'
    cases: list[Case] = field(default_factory=list)
    bail_out: str | None = None
    totals: dict[str, int] = field(default_factory=dict)
    diagnostics: list[str] = field(default_factory=list)  # '# ...' lines, without '# '
    output: list[str] = field(default_factory=list)  # non-TAP lines
    tap_lines: int = 0

    @property
    def is_tap(self) -> bool:
        return self.version is not None or self.plan is not None or bool(self.cases)

    def count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)


def _split_prefix(line: str, prefixed_open: int) -> tuple[int, str]:
    """(depth, text). Depth counts leading spaces, plus 1000 per '# ' prefix of a nested
    stream printed through kselftest's runner ('# TAP version 13', '# ok 1 ...')."""
    hashes = 0
    rest = line
    while rest.startswith("# ") or rest.startswith("#\t"):
        inner = rest[2:]
        if hashes < prefixed_open or _VERSION.match(inner.strip()):
            hashes += 1
            rest = inner
        else:
            break
    expanded = rest.replace("\t", "        ")
    text = expanded.lstrip(" ")
    return hashes * 1000 + len(expanded) - len(text), text.rstrip()


class Parser:
    """Incremental: feed lines as they come; `stream` is the top level at all times."""

    def __init__(self) -> None:
        self.stream = Stream()
        self._stack: list[tuple[int, Stream]] = [(0, self.stream)]
        self._pending_name: str | None = None
        self._closed: Stream | None = None
        self._lineno = 0

    def feed(self, raw: str) -> None:
        self._lineno += 1
        line = _ANSI.sub("", raw.rstrip("\r\n").replace("\r", ""))
        if not line.strip():
            return
        depth, text = _split_prefix(line, self._stack[-1][0] // 1000)
        top_depth, top = self._stack[-1]
        self._closed = None
        if depth > top_depth and (_VERSION.match(text) or _PLAN.match(text)):
            # A nested stream announces itself with a version or plan line, deeper than ours.
            child = Stream(name=self._pending_name or "")
            self._pending_name = None
            self._stack.append((depth, child))
            top_depth, top = depth, child
        elif depth < top_depth and _RESULT.match(text):
            # The parent's result line closes every deeper stream; they become its subtests.
            while len(self._stack) > 1 and self._stack[-1][0] > depth:
                self._closed = self._stack.pop()[1]
            top_depth, top = self._stack[-1]
        self._line(top, text, depth == top_depth)

    def _line(self, stream: Stream, text: str, at_level: bool) -> None:
        if m := _VERSION.match(text):
            stream.version = f"{m.group(1)} {m.group(2)}"
        elif (m := _PLAN.match(text)) and stream.plan is None:
            stream.plan = int(m.group(1))
            if m.group(2) and m.group(2).upper() == "SKIP":
                stream.plan_skip = m.group(3).strip()
        elif (m := _RESULT.match(text)) and at_level:
            stream.cases.append(self._case(m))
        elif m := _BAIL.match(text):
            stream.bail_out = m.group(1).strip()
        elif m := _SUBTEST.match(text):
            name = m.group(1).strip()
            if at_level and stream is not self.stream and not stream.name and not stream.cases:
                stream.name = name  # KUnit's order: nested 'KTAP version 1', then its name
            else:
                self._pending_name = name  # the older order: the name, then the nested test
        elif m := _TOTALS.match(text):
            for item in m.group(1).split():
                key, _, value = item.partition(":")
                if value.isdigit():
                    stream.totals[key] = int(value)
        elif text.startswith("#"):
            stream.diagnostics.append(text[1:].strip())
            return
        else:
            stream.output.append(text)
            return
        stream.tap_lines += 1

    def _case(self, m: re.Match[str]) -> Case:
        rest = m.group(3).strip()
        directive, reason = None, ""
        if d := _DIRECTIVE.search(rest):
            directive = d.group(1).upper()
            reason = d.group(2).strip()
            rest = rest[: d.start()].strip()
        case = Case(
            number=int(m.group(2)) if m.group(2) else None,
            description=rest,
            ok=m.group(1) == "ok",
            directive=directive,
            reason=reason,
            line=self._lineno,
        )
        # kselftest prints 'ok 5 # SKIP reason': the reason is the only description there is.
        if not case.description and reason:
            case.description = reason
        if self._closed is not None:
            case.subtests = self._closed.cases
            case.description = case.description or self._closed.name
            self._closed = None
        return case


def parse(lines: Iterable[str]) -> Stream:
    parser = Parser()
    for line in lines:
        parser.feed(line)
    return parser.stream


@dataclass(frozen=True)
class Ending:
    """How the program ended, as the guest saw it."""

    status: int | None  # exit status from the shell (128+N: killed by signal N); None: unknown
    timed_out: bool = False  # killed at its deadline
    crashed: str | None = None  # a fatal kernel splat or a dead guest while it ran
    bounded: bool = False  # runs until killed: reaching the deadline is the normal end


@dataclass(frozen=True)
class Verdict:
    outcome: str  # one of OUTCOMES
    reason: str
    counts: dict[str, int]

    def to_json(self) -> dict[str, object]:
        return {"outcome": self.outcome, "reason": self.reason, "counts": self.counts}


_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV",
            15: "SIGTERM"}  # fmt: skip


def _last_words(stream: Stream) -> str:
    """The most telling line a test printed last: output, else a diagnostic."""
    for line in reversed(stream.output):
        if line.strip():
            return line.strip()[:200]
    for line in reversed(stream.diagnostics):
        if line.strip() and not line.startswith("Totals:"):
            return line.strip()[:200]
    return ""


def _counts(stream: Stream) -> dict[str, int]:
    counts: dict[str, int] = {}
    for case in stream.cases:
        counts[case.status] = counts.get(case.status, 0) + 1
    return counts


def judge(stream: Stream, ending: Ending) -> Verdict:
    """One outcome for one test program: pass, fail, skip, timeout or crash.

    Order: a kernel crash beats everything; then the deadline; then what TAP said; then the
    exit status (4 = KSFT_SKIP) for the many 6.1 vm tests that print no TAP.
    """
    counts = _counts(stream)
    failed = [c for c in stream.cases if c.status in ("fail", "error", "xpass")]
    if ending.crashed:
        return Verdict("crash", ending.crashed, counts)
    if ending.timed_out:
        if ending.bounded and not failed and stream.bail_out is None:
            return Verdict("pass", "ran until its deadline (bounded)", counts)
        return Verdict("timeout", "killed at its deadline", counts)
    if stream.bail_out is not None:
        return Verdict("fail", f"Bail out! {stream.bail_out}".strip(), counts)
    if failed:
        first = failed[0]
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        what = first.description or f"test {first.number}"
        why = f": {first.reason}" if first.reason and first.reason != what else ""
        return Verdict("fail", f"not ok {first.number} {what}{why}{more}".strip(), counts)
    status = ending.status
    if status is not None and status > 128 and status - 128 in _SIGNALS:
        return Verdict("fail", f"killed by {_SIGNALS[status - 128]}", counts)
    if stream.plan_skip is not None:
        return Verdict("skip", stream.plan_skip or "plan 1..0", counts)
    skipped = [c for c in stream.cases if c.status == "skip"]
    if status == KSFT_SKIP:
        reason = skipped[-1].reason if skipped else _last_words(stream)
        return Verdict("skip", reason or "exit status 4 (KSFT_SKIP)", counts)
    if status not in (None, KSFT_PASS):
        last = _last_words(stream)
        return Verdict("fail", f"exit status {status}" + (f": {last}" if last else ""), counts)
    if stream.plan is not None and len(stream.cases) < stream.plan:
        return Verdict("fail", f"ran {len(stream.cases)} of {stream.plan} planned tests", counts)
    if stream.cases and len(skipped) == len(stream.cases):
        return Verdict("skip", skipped[0].reason or "every test skipped", counts)
    if status is None:
        return Verdict("crash", "no exit status: the program never finished", counts)
    note = f"{len(skipped)} skipped: {skipped[0].reason}" if skipped else ""
    return Verdict("pass", note, counts)
