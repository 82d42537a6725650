"""Shrinking a failing workload: delta debugging over steps, then processes, then sizes.

Each round builds candidates from the smallest failing workload so far (remove chunks of
steps, halving the chunk size down to single steps; remove a process with everything it
does; halve lengths, drop offsets, align addresses, default the setup), keeps those the
language accepts, runs them all in the guest in one batch, and keeps the smallest that
still fails with the same signature. A candidate the parser refuses because a removed step
is still referred to (a map, a file, a process) is repaired by dropping the refusing step,
so removing an mmap takes the steps on that map with it. It stops when no candidate fails.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.campaign import generate
from harness.errors import HarnessError
from harness.formats.workload_yaml import Doc, dump_docs, size_text
from harness.workload import PAGE_SIZE

if TYPE_CHECKING:
    from harness.campaign.fuzz import GuestRunner, Outcome

MAX_ROUNDS = 40
MAX_CANDIDATES = 48  # per round: one guest batch
MAX_REPAIRS = 12
PMD = 2 << 20
_STEP_KEY = re.compile(r"steps\[(\d+)\]")
_SIZE = re.compile(r"^(\d+)([KMG]?)$")


@dataclass
class ShrinkResult:
    doc: Doc
    diff: str
    rounds: int
    candidates: int


def _bytes(value: Any) -> int:
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if m is None:
        return 0
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def size(doc: Doc) -> tuple[int, int, int, int]:
    """Smaller is simpler: steps, processes, bytes named by the steps, setup left as is."""
    steps = doc["steps"]
    procs = sum(1 for s in steps if "spawn" in s or "fork" in s)
    nbytes = sum(
        _bytes(v)
        for s in steps
        for args in s.values()
        for k, v in (args or {}).items()
        if k in ("length", "size", "offset", "at", "to", "file_offset")
    )
    setup = doc.get("setup") or {}
    plain = {"thp_defrag": "madvise", "shmem_enabled": "never"}
    knobs = len(setup.get("mounts", ())) + sum(setup.get(k, v) != v for k, v in plain.items())
    knobs += sum(k in setup for k in ("fault_around_bytes", "fault_around_whole_folio"))
    # A file or a shared mapping is more to explain than a private anonymous one.
    knobs += sum(bool(a.get("file") or a.get("shared")) for s in steps for a in s.values()
                 if isinstance(a, dict))  # fmt: skip
    return len(steps), procs, nbytes, knobs


def repair(doc: Doc) -> Doc | None:
    """doc made valid by dropping the steps the parser refuses; None if that fails."""
    doc = copy.deepcopy(doc)
    for _ in range(MAX_REPAIRS):
        if not doc["steps"]:
            return None
        try:
            generate.validate(doc)
            return doc
        except HarnessError as exc:
            m = _STEP_KEY.search(str(exc).split("; the workload:")[0])
            if m is None:
                return None
            del doc["steps"][int(m.group(1))]
    return None


def _without(doc: Doc, drop: set[int]) -> Doc:
    out = copy.deepcopy(doc)
    out["steps"] = [s for i, s in enumerate(doc["steps"]) if i not in drop]
    return out


def step_candidates(doc: Doc) -> list[Doc]:
    """ddmin's complements: remove n/2, n/4, ... 1 consecutive steps at every position."""
    n = len(doc["steps"])
    out = []
    chunk = max(1, n // 2)
    while True:
        for lo in range(0, n, chunk):
            out.append(_without(doc, set(range(lo, min(n, lo + chunk)))))
        if chunk == 1:
            break
        chunk = max(1, chunk // 2)
    return out


def process_candidates(doc: Doc) -> list[Doc]:
    """Remove one process (spawned or forked) and every step it runs."""
    procs = []
    for step in doc["steps"]:
        ((op, args),) = step.items()
        if op == "spawn":
            procs.append(args["proc"])
        elif op == "fork":
            procs.append(args["child"])
    out = []
    for proc in procs:
        drop = set()
        for i, step in enumerate(doc["steps"]):
            ((op, args),) = step.items()
            args = args or {}
            if args.get("proc") == proc or (op == "fork" and args.get("child") == proc):
                drop.add(i)
        out.append(_without(doc, drop))
    return out


def _smaller(value: Any) -> list[Any]:
    """Smaller lengths worth a try: one page, the 2 MiB multiple below, half."""
    n = _bytes(value)
    out = []
    for smaller in (PAGE_SIZE, n // PMD * PMD, n // 2 // PAGE_SIZE * PAGE_SIZE):
        if PAGE_SIZE <= smaller < n and size_text(smaller) not in out:
            out.append(size_text(smaller))
    return out


def size_candidates(doc: Doc) -> list[Doc]:
    """Ranges and sizes: whole ranges, halved lengths, aligned addresses, plain setup."""
    out = []

    def variant(i: int, change: Callable[[Doc], None]) -> None:
        cand = copy.deepcopy(doc)
        ((_, args),) = cand["steps"][i].items()
        change(args)
        if cand != doc:
            out.append(cand)

    for i, step in enumerate(doc["steps"]):
        ((op, args),) = step.items()
        if not args:
            continue
        if "offset" in args and op != "punch":
            variant(i, lambda a: a.pop("offset"))
        for smaller in _smaller(args.get("length", 0)):
            variant(i, lambda a, v=smaller: a.__setitem__("length", v))
        if op == "mmap":
            at = _bytes(args["at"])
            if at % PMD:
                variant(i, lambda a, v=at - at % PMD: a.__setitem__("at", size_text(v)))
            for key in ("prot", "file_offset"):
                if key in args:
                    variant(i, lambda a, k=key: a.pop(k))
            if "file" in args:  # anonymous instead: the file step may go next
                variant(i, lambda a: (a.pop("file"), a.pop("file_offset", None)))
            if args.get("shared"):
                variant(i, lambda a: a.pop("shared"))
        if op == "file":
            for smaller in _smaller(args["size"]):
                variant(i, lambda a, v=smaller: a.__setitem__("size", v))
            if "populate" in args:
                variant(i, lambda a: a.pop("populate"))
        if op == "touch" and args.get("write"):
            variant(i, lambda a: a.pop("write"))
        if op == "mremap":
            to = _bytes(args["to"])
            if to % PMD:
                variant(i, lambda a, v=to - to % PMD: a.__setitem__("to", size_text(v)))
    setup = doc.get("setup") or {}
    if "mounts" in setup:
        cand = copy.deepcopy(doc)
        del cand["setup"]["mounts"]
        out.append(cand)
    for key in ("fault_around_bytes", "fault_around_whole_folio"):
        if key in setup:
            cand = copy.deepcopy(doc)
            del cand["setup"][key]
            out.append(cand)
    for key, plain in (("thp_defrag", "madvise"), ("shmem_enabled", "never")):
        if setup.get(key, plain) != plain:
            cand = copy.deepcopy(doc)
            cand["setup"][key] = plain
            out.append(cand)
    return out


PHASES: tuple[Callable[[Doc], list[Doc]], ...] = (
    step_candidates,
    process_candidates,
    size_candidates,
)


def _valid(doc: Doc, candidates: list[Doc]) -> list[Doc]:
    seen = {dump_docs([doc])}
    out = []
    for cand in candidates:
        fixed = repair(cand)
        if fixed is None or size(fixed) >= size(doc):
            continue
        key = dump_docs([fixed])
        if key not in seen:
            seen.add(key)
            out.append(fixed)
    return out[:MAX_CANDIDATES]


BatchTest = Callable[[list[Doc]], list[tuple[bool, str]]]


def _combine(base: Doc, variants: list[Doc]) -> Doc | None:
    """base with every step and setup change of the variants (same steps, edited args)."""
    out = copy.deepcopy(base)
    for variant in variants:
        if len(variant["steps"]) != len(base["steps"]):
            continue
        for i, (was, now) in enumerate(zip(base["steps"], variant["steps"], strict=True)):
            if was != now:
                out["steps"][i] = copy.deepcopy(now)
        if variant.get("setup") != base.get("setup"):
            for key in set(base.get("setup") or {}) | set(variant.get("setup") or {}):
                if (base.get("setup") or {}).get(key) != (variant.get("setup") or {}).get(key):
                    if key in (variant.get("setup") or {}):
                        out["setup"][key] = variant["setup"][key]
                    else:
                        out["setup"].pop(key, None)
    fixed = repair(out)
    if fixed is None or size(fixed) >= min(size(v) for v in variants):
        return None
    fixed["name"] = base["name"] + "-all"
    return fixed


def shrink_with(doc: Doc, test: BatchTest, say: Callable[[str], None] | None = None
                ) -> ShrinkResult:  # fmt: skip
    """The loop: `test` runs a batch of docs and says which still fail (and their diff)."""
    best, diff, rounds, tried = doc, "", 0, 0
    phase = 0
    while rounds < MAX_ROUNDS and phase < len(PHASES):
        candidates = _valid(best, PHASES[phase](best))
        if not candidates:
            phase += 1
            continue
        rounds += 1
        base = re.sub(r"(-s\d+-\d+|-all)+$", "", best["name"])
        for k, cand in enumerate(candidates):
            cand["name"] = f"{base}-s{rounds}-{k}"
        tried += len(candidates)
        results = test(candidates)
        failing = [(c, d) for c, (bad, d) in zip(candidates, results, strict=True) if bad]
        if not failing:
            phase += 1
            continue
        before = len(best["steps"])
        if PHASES[phase] is size_candidates and len(failing) > 1:
            # Independent simplifications that each keep the failure are likely to keep it
            # together: try them all at once first, as the next round's first candidate.
            combined = _combine(best, [c for c, _ in failing])
            results = test([combined]) if combined is not None else []
            tried += len(results)
            if results and results[0][0]:
                failing.append((combined, results[0][1]))
        best, diff = min(failing, key=lambda pair: size(pair[0]))
        if len(best["steps"]) < before:
            phase = 0  # fewer steps: removing steps may go further again
        if say is not None:
            say(f"shrink: round {rounds}: {len(best['steps'])} steps ({len(failing)} of "
                f"{len(candidates)} candidates still fail)")  # fmt: skip
    return ShrinkResult(best, diff, rounds, tried)


def shrink(outcome: Outcome, runner: GuestRunner, say: Callable[[str], None]) -> ShrinkResult:
    """Shrink a workload that failed in the guest, re-running candidates in batches."""
    from harness.campaign.fuzz import same_failure

    signature = outcome.signature or outcome.status

    def test(docs: list[Doc]) -> list[tuple[bool, str]]:
        outcomes = runner.run(docs)
        return [(same_failure(o, signature), o.diff) for o in outcomes]

    result = shrink_with(outcome.doc, test, say)
    if not result.diff:
        result.diff = outcome.diff
    return result


def shrink_offline(doc: Doc, signature: str, signature_of: Callable[[Doc], str | None]) -> Doc:
    """Shrink without a guest: `signature_of` says what a doc fails with (the model alone)."""

    def test(docs: list[Doc]) -> list[tuple[bool, str]]:
        return [(signature_of(d) == signature, "") for d in docs]

    return shrink_with(doc, test).doc
