"""Data-channel records (guest-tests/WORKLOAD.md) parsed from a real mmwork run.

tests/data/records/anon-thp-munmap-half.log was produced by mmwork on a Linux host for the
anon-thp-munmap-half scenario (configs/workloads/skeleton.yaml, run by configs/thp.yaml).
"""

from pathlib import Path

from harness.records import parse_records

DATA = Path(__file__).parent / "data" / "records"


def load(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def test_real_run_parses_into_steps_probes_and_pages() -> None:
    parser = parse_records(load("anon-thp-munmap-half.log"))
    assert parser.malformed == []
    (sc,) = parser.scenarios
    assert sc.name == "anon-thp-munmap-half" and sc.complete and sc.status == "ok"
    assert [(s.index, s.op, s.ok) for s in sc.steps] == [
        (1, "mmap", True), (2, "madvise", True), (3, "touch", True),
        (4, "probe", True), (5, "munmap", True), (6, "probe", True),
    ]  # fmt: skip
    whole, half = sc.probes
    assert (whole.label, whole.process, whole.addr, whole.npages) == (
        "whole", "main", 0x100000000000, 512,
    )  # fmt: skip
    assert len(whole.pages) == 512 and whole.complete
    heads = {p.head_pfn for p in whole.pages}
    assert len(heads) == 1 and all(p.order == 9 for p in whole.pages)
    assert all(p.page_mapcount == 1 for p in whole.pages)
    assert [p.pfn - whole.pages[0].pfn for p in whole.pages] == list(range(512))
    assert "thp" in whole.pages[0].flags() and "compound_head" in whole.pages[0].flags()
    assert whole.vmas[0].anon_huge_kb == 2048
    assert len(half.pages) == 256 and half.vmas[0].pmd_mapped_kb == 0
    assert sc.vmstat["end"]["thp_fault_alloc"] - sc.vmstat["begin"]["thp_fault_alloc"] == 1


def test_truncated_stream_keeps_what_arrived() -> None:
    lines = load("anon-thp-munmap-half.log")
    cut = next(i for i, line in enumerate(lines) if line.startswith("@PAGE")) + 100
    (sc,) = parse_records(lines[:cut]).scenarios
    assert not sc.complete
    (probe,) = sc.probes
    assert len(probe.pages) == 100 and not probe.complete


def test_error_steps_absent_pages_and_garbage() -> None:
    lines = [
        "@SCENARIO s",
        "@SETUP /sys/kernel/mm/transparent_hugepage/enabled err 2 ENOENT",
        "@STEP 1 munmap err 22 EINVAL",
        "@PROBE p main 7 100000000000 1",
        "@PAGE 100000000000 - 0 - - - -",
        "@ENDPROBE p",
        "@STEP 2 probe ok",
        "@PAGE not-in-a-probe",
        "@STEP x",
        "console noise that is not a record",
        "@ENDSCENARIO s err",
    ]
    parser = parse_records(lines)
    (sc,) = parser.scenarios
    assert sc.setup == {"/sys/kernel/mm/transparent_hugepage/enabled": "ENOENT"}
    assert (sc.steps[0].ok, sc.steps[0].errno, sc.steps[0].errname) == (False, 22, "EINVAL")
    page = sc.probes[0].pages[0]
    assert not page.present and page.page_mapcount is None and page.order is None
    assert sc.status == "err"
    assert parser.malformed == ["@PAGE not-in-a-probe", "@STEP x"]


def test_series_mapcount_fields_are_optional() -> None:
    lines = [
        "@SCENARIO s",
        "@PROBE p main 7 100000000000 2",
        "@PAGE 100000000000 3072 8100000000000c00 2 40040d828 3072 9 513 1 -",
        "@PAGE 100000001000 3073 8100000000000c01 2 400415828 3072 9",
        "@ENDPROBE p",
        "@ENDSCENARIO s ok",
    ]
    parser = parse_records(lines)
    assert parser.malformed == []
    with_series, without = parser.scenarios[0].probes[0].pages
    assert (with_series.total_mapcount, with_series.entire_mapcount) == (513, 1)
    assert with_series.pt_mapcount is None  # '-': W not kept by this kernel
    assert without.total_mapcount is None and without.order == 9


def test_audit_records_attach_to_their_probe() -> None:
    lines = [
        "@SCENARIO s",
        "@PROBE p main 7 100000000000 1",
        "@PAGE 100000000000 3072 8100000000000c00 1 40040d828 3072 9 512 0 -",
        "@AUDIT 3072 2 1 ok",
        "@AUDIT 4096 0 0 skipped",
        "@ENDPROBE p",
    ]
    (probe,) = parse_records(lines).scenarios[0].probes
    assert probe.audits == {3072: (2, 1, "ok"), 4096: (0, 0, "skipped")}


def test_counts_and_exit_snapshot_are_optional_records() -> None:
    lines = [
        "@SCENARIO s",
        "@VMSTAT begin nr_anon_pages=100 nr_mapped=50 self_anon_kb=40 self_rss_kb=400",
        "@PROBE p main 12 100000000000 1",
        "@PAGE 100000000000 - 0 - - - -",
        "@COUNTS rss_anon_kb=2048 rss_file_kb=8 rss_shmem_kb=0 nr_anon_pages=612 nr_mapped=50",
        "@ENDPROBE p",
        "@STEP 1 probe ok",
        "@VMSTAT end nr_anon_pages=612 nr_mapped=50 self_anon_kb=40 self_rss_kb=400",
        "@VMSTAT exit nr_anon_pages=100 nr_mapped=50 self_anon_kb=40 self_rss_kb=400",
        "@ENDSCENARIO s ok",
    ]
    parser = parse_records(lines)
    assert parser.malformed == []
    (sc,) = parser.scenarios
    assert sc.probes[0].counts == {"rss_anon_kb": 2048, "rss_file_kb": 8, "rss_shmem_kb": 0,
                                   "nr_anon_pages": 612, "nr_mapped": 50}  # fmt: skip
    assert sc.vmstat["exit"]["nr_anon_pages"] == 100
    # Older captures have neither: they still parse, with no counts.
    old = parse_records(load("anon-thp-munmap-half.log"))
    assert all(p.counts == {} for p in old.scenarios[0].probes)
    assert "exit" not in old.scenarios[0].vmstat


def test_page_runs_expand_to_pages() -> None:
    """@PAGES: n pages, each one page further on, the PFN one further (step 1) or the same."""
    parser = parse_records(
        [
            "@SCENARIO r",
            "@PROBE p main 9 100000000000 9",
            "@PAGES 100000000000 3 1 5000 8600000000005000 1 28000 5000 9 3 0 1",
            "@PAGES 100000003000 2 1 7000 8100000000007000 1 800 = 0 - - -",
            "@PAGES 100000005000 2 0 - 0 - - - - - - -",
            "@PAGES 100000007000 2 0 7203 8000000000001c23 0 101000000 7203 0 - - -",
            "@ENDPROBE p",
            "@ENDSCENARIO r ok",
        ]
    )
    assert parser.malformed == []
    pages = parser.scenarios[0].probes[0].pages
    assert [p.va - 0x100000000000 for p in pages] == [k * 4096 for k in range(9)]
    assert [p.pfn for p in pages] == [5000, 5001, 5002, 7000, 7001, None, None, 7203, 7203]
    assert [p.head_pfn for p in pages] == [5000, 5000, 5000, 7000, 7001, None, None, 7203, 7203]
    assert [p.pagemap & 0xFFFF for p in pages] == [
        0x5000,
        0x5001,
        0x5002,
        0x7000,
        0x7001,
        0,
        0,
        0x1C23,
        0x1C23,
    ]
    assert [p.order for p in pages[:5]] == [9, 9, 9, 0, 0]
    assert (pages[1].total_mapcount, pages[1].entire_mapcount, pages[1].pt_mapcount) == (3, 0, 1)
    assert pages[3].total_mapcount is None and not pages[5].present
