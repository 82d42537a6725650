"""Parser of mmwork's data-channel records (guest-tests/WORKLOAD.md, "Records").

Pure: a stream of lines in, per-scenario results out. Tolerant of a truncated stream (a
crashed guest): whatever arrived is kept and the scenario is marked incomplete.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h)
KPF_NAMES = {
    0: "locked", 3: "uptodate", 4: "dirty", 5: "lru", 6: "active", 10: "buddy",
    11: "mmap", 12: "anon", 13: "swapcache", 14: "swapbacked", 15: "compound_head",
    16: "compound_tail", 17: "huge", 19: "hwpoison", 20: "nopage", 21: "ksm", 22: "thp",
    23: "offline", 24: "zero_page", 25: "idle", 26: "pgtable",
}  # fmt: skip
PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_FILE = 1 << 61
PM_MMAP_EXCLUSIVE = 1 << 56
PAGE_SIZE = 4096


@dataclass
class Page:
    va: int
    pfn: int | None
    pagemap: int
    page_mapcount: int | None
    kpageflags: int | None
    head_pfn: int | None
    order: int | None
    # From the kernel series' kpagemc, when the guest kernel has it:
    total_mapcount: int | None = None  # T
    entire_mapcount: int | None = None  # E
    pt_mapcount: int | None = None  # W

    @property
    def present(self) -> bool:
        return self.pfn is not None

    def flags(self) -> list[str]:
        if self.kpageflags is None:
            return []
        return list(_flag_names(self.kpageflags))

    def to_json(self) -> dict[str, object]:
        return {
            "va": f"0x{self.va:x}",
            "pfn": self.pfn,
            "page_mapcount": self.page_mapcount,
            "head_pfn": self.head_pfn,
            "order": self.order,
            "total_mapcount": self.total_mapcount,
            "entire_mapcount": self.entire_mapcount,
            "pt_mapcount": self.pt_mapcount,
            "flags": self.flags(),
            "pagemap_exclusive": bool(self.pagemap & PM_MMAP_EXCLUSIVE),
            "pagemap_file": bool(self.pagemap & PM_FILE),
        }


@functools.lru_cache(maxsize=1024)
def _flag_names(kpageflags: int) -> tuple[str, ...]:
    """A probe's pages share a handful of flag words: name each once."""
    return tuple(name for bit, name in KPF_NAMES.items() if kpageflags >> bit & 1)


@dataclass
class VmaInfo:
    start: int
    end: int
    rss_kb: int
    anon_huge_kb: int
    shmem_pmd_kb: int
    file_pmd_kb: int

    @property
    def pmd_mapped_kb(self) -> int:
        return self.anon_huge_kb + self.shmem_pmd_kb + self.file_pmd_kb

    def to_json(self) -> dict[str, object]:
        return {
            "start": f"0x{self.start:x}",
            "end": f"0x{self.end:x}",
            "rss_kb": self.rss_kb,
            "pmd_mapped_kb": self.pmd_mapped_kb,
            "anon_huge_kb": self.anon_huge_kb,
            "shmem_pmd_kb": self.shmem_pmd_kb,
            "file_pmd_kb": self.file_pmd_kb,
        }


@dataclass
class Probe:
    label: str
    process: str
    pid: int
    addr: int
    npages: int
    pages: list[Page] = field(default_factory=list)
    vmas: list[VmaInfo] = field(default_factory=list)
    # The series' rmap audit per head PFN: (tuples = W, vmas = V, status).
    audits: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    # @COUNTS (optional, newer mmwork): the process's Rss* (kB) and the global mapped-page
    # counters (pages) at the probe.
    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = False


KPF_UPTODATE, KPF_LRU, KPF_SLAB, KPF_BUDDY = 1 << 3, 1 << 5, 1 << 7, 1 << 10
KPF_ANON, KPF_SWAPBACKED, KPF_PGTABLE = 1 << 12, 1 << 14, 1 << 26
RECALL_STATES = ("mapped", "cached", "unmapped", "split", "freed")


# A recall state the PFN facts leave open: "mapped" (moved) or "freed" (and reused).
ELSEWHERE = "mapped elsewhere"


@dataclass
class Recall:
    """A recall step's look at a remembered folio (None fields: the probe saw no page)."""

    label: str
    probe: str
    va: int
    head_pfn: int | None
    order: int | None  # when the probe saw it
    now_order: int | None  # of the folio the head PFN heads now; None: a tail, or unknown
    kpageflags: int | None  # of the head PFN now
    mapped_pages: int | None  # of the remembered PFNs, those with a mapcount
    resident_pages: int | None  # of its page-cache indexes, those resident (file folios)
    # of the remembered PFNs, those mapped where the probe saw them, in any process of the
    # scenario (None: an older mmwork)
    mapped_in_place: int | None = None

    def state(self, was_anon: bool) -> str | None:
        """What became of the folio, judged by its head page (WORKLOAD.md, "recall")."""
        flags, order = self.kpageflags, self.order
        if flags is None or order is None:
            return None
        in_use = flags & (KPF_UPTODATE | KPF_LRU | KPF_ANON | KPF_SWAPBACKED)
        reused = flags & (KPF_SLAB | KPF_PGTABLE) or bool(flags & KPF_ANON) != was_anon
        if flags & KPF_BUDDY or not in_use or reused or self.now_order is None:
            return "freed"
        if self.now_order > order:
            return "freed"  # the head PFN is in a larger folio now: freed and reused
        if self.now_order < order:
            return "split"
        if self.mapped_pages and self.mapped_in_place == 0:
            # Mapped, but not where the folio was: moved (mremap), or freed and handed out
            # again (on the one CPU a scenario runs on, the next small allocation takes
            # the page freed last). PFN facts cannot tell which.
            return ELSEWHERE
        if self.mapped_pages:
            return "mapped"
        if not was_anon and self.resident_pages:
            return "cached"
        return "unmapped"

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "probe": self.probe,
            "va": f"0x{self.va:x}",
            "head_pfn": self.head_pfn,
            "order": self.order,
            "now_order": self.now_order,
            "mapped_pages": self.mapped_pages,
            "resident_pages": self.resident_pages,
            "mapped_in_place": self.mapped_in_place,
        }


@dataclass
class StepResult:
    index: int
    op: str
    ok: bool
    errno: int | None = None
    errname: str | None = None


@dataclass
class ScenarioRecords:
    name: str
    steps: list[StepResult] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    setup: dict[str, str] = field(default_factory=dict)  # path -> 'ok' or error name
    vmstat: dict[str, dict[str, int]] = field(default_factory=dict)  # begin/end -> counters
    recalls: dict[str, Recall] = field(default_factory=dict)  # by recall label
    errors: list[str] = field(default_factory=list)
    status: str | None = None  # 'ok' | 'err' | None (stream ended early)

    @property
    def complete(self) -> bool:
        return self.status is not None


def _opt_int(token: str, base: int = 10) -> int | None:
    return None if token == "-" else int(token, base)


class RecordParser:
    def __init__(self) -> None:
        self.scenarios: list[ScenarioRecords] = []
        self.malformed: list[str] = []
        self._probe: Probe | None = None

    @property
    def _current(self) -> ScenarioRecords | None:
        return self.scenarios[-1] if self.scenarios else None

    def feed(self, raw: str) -> None:
        line = raw.strip("\r\n\0 ")
        if not line.startswith("@"):
            return
        tokens = line.split(" ")
        try:
            self._dispatch(tokens)
        except (IndexError, ValueError):
            self.malformed.append(line)

    def _dispatch(self, t: list[str]) -> None:
        tag = t[0]
        if tag == "@PAGE" and self._probe is not None:
            # Most records are pages (tens of thousands a run): the fast path, first.
            n = len(t)
            self._probe.pages.append(
                Page(
                    int(t[1], 16),
                    None if t[2] == "-" else int(t[2]),
                    int(t[3], 16),
                    None if t[4] == "-" else int(t[4]),
                    None if t[5] == "-" else int(t[5], 16),
                    None if t[6] == "-" else int(t[6]),
                    None if t[7] == "-" else int(t[7]),
                    # Optional trailing fields (older records and unpatched kernels: absent/-).
                    None if n <= 8 or t[8] == "-" else int(t[8]),
                    None if n <= 9 or t[9] == "-" else int(t[9]),
                    None if n <= 10 or t[10] == "-" else int(t[10]),
                )
            )
            return
        if tag == "@SCENARIO":
            self.scenarios.append(ScenarioRecords(t[1]))
            self._probe = None
            return
        sc = self._current
        if sc is None:
            self.malformed.append(" ".join(t))
            return
        if tag == "@STEP":
            index = int(t[1])
            if t[3] == "ok":
                sc.steps.append(StepResult(index, t[2], True))
            else:
                sc.steps.append(StepResult(index, t[2], False, int(t[4]), t[5]))
        elif tag == "@SETUP":
            sc.setup[t[1]] = "ok" if t[2] == "ok" else t[4]
        elif tag == "@PROBE":
            self._probe = Probe(t[1], t[2], int(t[3]), int(t[4], 16), int(t[5]))
            sc.probes.append(self._probe)
        elif tag == "@PAGES" and self._probe is not None:
            # A run of n pages, page k at va + k pages, its PFN and pagemap entry + k * step.
            va, count, step, pfn = int(t[1], 16), int(t[2]), int(t[3]), _opt_int(t[4])
            pagemap = int(t[5], 16)
            own_head = t[8] == "=" and pfn is not None  # small folios, each its own head
            head = None if own_head else _opt_int(t[8])
            count_, flags, order = _opt_int(t[6]), _opt_int(t[7], 16), _opt_int(t[9])
            counts = [_opt_int(x) for x in t[10:13]] + [None] * (13 - len(t))
            for k in range(count):
                page_pfn = None if pfn is None else pfn + k * step
                self._probe.pages.append(
                    Page(va + k * PAGE_SIZE, page_pfn, pagemap + k * step, count_, flags,
                         page_pfn if own_head else head, order, *counts[:3])
                )  # fmt: skip
        elif tag == "@VMA" and self._probe is not None:
            start, end, *kbs = t[1:7]
            self._probe.vmas.append(VmaInfo(int(start, 16), int(end, 16), *map(int, kbs)))
        elif tag == "@AUDIT" and self._probe is not None:
            self._probe.audits[int(t[1])] = (int(t[2]), int(t[3]), t[4])
        elif tag == "@COUNTS" and self._probe is not None:
            for token in t[1:]:
                name, _, value = token.partition("=")
                self._probe.counts[name] = int(value)
        elif tag == "@ENDPROBE" and self._probe is not None:
            self._probe.complete = True
            self._probe = None
        elif tag == "@RECALL":
            sc.recalls[t[1]] = Recall(
                t[1], t[2], int(t[3], 16), _opt_int(t[4]), _opt_int(t[5]), _opt_int(t[6]),
                _opt_int(t[7], 16), _opt_int(t[8]), _opt_int(t[9]),
                _opt_int(t[10]) if len(t) > 10 else None,
            )  # fmt: skip
        elif tag == "@VMSTAT":
            counters = {}
            for token in t[2:]:
                name, _, value = token.partition("=")
                counters[name] = int(value)
            sc.vmstat[t[1]] = counters
        elif tag == "@ERROR":
            sc.errors.append(" ".join(t[1:]))
        elif tag == "@ENDSCENARIO":
            sc.status = t[2] if len(t) > 2 else "ok"
        else:
            self.malformed.append(" ".join(t))


def parse_records(lines: Iterable[str]) -> RecordParser:
    parser = RecordParser()
    for line in lines:
        parser.feed(line)
    return parser
