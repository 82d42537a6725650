"""harness fuzz offline: the generator, the YAML writer, shrinking, signatures, coverage."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from harness import compare, model, workload
from harness.campaign import fuzz, generate, shrink
from harness.errors import HarnessError
from harness.formats import workload_yaml

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SAMPLE = 300  # generated workloads the offline checks walk through


@pytest.fixture(scope="module")
def sample() -> list[tuple[workload_yaml.Doc, workload.Scenario]]:
    return [generate.generate(7, i, whole_folio=True) for i in range(SAMPLE)]


# --- the writer ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS / "workloads").glob("*.yaml")))
def test_writer_round_trips_the_bundled_workloads(tmp_path: Path, name: str) -> None:
    scenarios = workload.load_workload(CONFIGS / "workloads" / name)
    path = tmp_path / name
    path.write_text(workload_yaml.dump(scenarios))
    again = workload.load_workload(path)
    assert [s.name for s in again] == [s.name for s in scenarios]
    for a, b in zip(scenarios, again, strict=True):
        assert workload.guest_script(a) == workload.guest_script(b), a.name
        assert a.description.strip() == b.description.strip()


def test_writer_round_trips_generated_workloads(tmp_path: Path, sample: list) -> None:
    scenarios = [sc for _, sc in sample]
    path = tmp_path / "generated.yaml"
    path.write_text(workload_yaml.dump(scenarios))
    again = workload.load_workload(path)
    for a, b in zip(scenarios, again, strict=True):
        assert workload.guest_script(a) == workload.guest_script(b), a.name


def test_writer_follows_maps_across_mremap_and_fork(tmp_path: Path) -> None:
    text = """scenarios:
  - name: moves
    steps:
      - mmap: {map: a, length: 4M, at: 2M}
      - fork: {child: c}
      - mremap: {map: a, offset: 1M, length: 1M, to: 20M, as: b}
      - mremap: {proc: c, map: a, to: 40M}
      - touch: {proc: c, map: a, offset: 8K, length: 4K}
      - touch: {map: b, offset: 4K, length: 4K}
      - probe: {label: p, proc: c, map: a, offset: 2M}
"""
    path = tmp_path / "w.yaml"
    path.write_text(text)
    (scenario,) = workload.load_workload(path)
    steps = workload_yaml.scenario_doc(scenario)["steps"]
    assert steps[4] == {"touch": {"proc": "c", "map": "a", "offset": "8K", "length": "4K"}}
    assert steps[5] == {"touch": {"map": "b", "offset": "4K", "length": "4K"}}
    assert steps[6]["probe"]["offset"] == "2M" and steps[6]["probe"]["length"] == "2M"


# --- the generator -------------------------------------------------------------------------


def test_whole_folio_mode_only_where_the_kernel_has_it() -> None:
    plain = [generate.generate_doc(9, i) for i in range(60)]
    series = [generate.generate_doc(9, i, whole_folio=True) for i in range(60)]
    assert not any("fault_around_whole_folio" in d["setup"] for d in plain)
    assert any("fault_around_whole_folio" in d["setup"] for d in series)
    # Only the knob differs: the rest of each workload is the same.
    assert [d["steps"] for d in plain] == [d["steps"] for d in series]


def test_same_seed_same_workloads_other_seed_others() -> None:
    first = [generate.generate_doc(3, i) for i in range(20)]
    again = [generate.generate_doc(3, i) for i in range(20)]
    other = [generate.generate_doc(4, i) for i in range(20)]
    assert first == again
    assert sum(a["steps"] != b["steps"] for a, b in zip(first, other, strict=True)) >= 18
    # Workload i does not depend on which workloads came before it.
    assert generate.generate_doc(3, 15) == first[15]


def test_generated_workloads_cover_every_op_and_knob(sample: list) -> None:
    ops = Counter(step.op for _, sc in sample for step in sc.steps)
    assert set(ops) == set(workload.OPS), set(workload.OPS) - set(ops)
    advice = {s.advice for _, sc in sample for s in sc.steps if isinstance(s, workload.Madvise)}
    assert advice == set(workload.ADVICE)
    prots = {s.prot for _, sc in sample for s in sc.steps if isinstance(s, workload.Mprotect)}
    assert prots == set(workload.PROTS)
    setups = [sc.setup for _, sc in sample]
    assert {s.thp_enabled for s in setups} == set(workload.THP_ENABLED)
    assert {s.thp_defrag for s in setups} == set(workload.THP_DEFRAG)
    assert {s.shmem_enabled for s in setups} == set(workload.SHMEM_ENABLED)
    assert {m.huge for s in setups for m in s.mounts} == set(workload.MOUNT_HUGE)
    assert {s.fault_around_whole_folio for s in setups} == {True, False}
    around = Counter(s.fault_around_bytes for s in setups)
    assert around[4096] and around[workload.DEFAULT_FAULT_AROUND_BYTES] and around[2 << 20]
    populate = {s.populate for _, sc in sample for s in sc.steps if s.op == "file"}
    assert populate == set(workload.POPULATE)
    kinds = {s.kind for _, sc in sample for s in sc.steps if s.op == "file"}
    assert kinds == set(workload.FILE_KINDS)


def test_generator_is_biased_toward_mapcount_geometry(sample: list) -> None:
    mmaps = [s for _, sc in sample for s in sc.steps if isinstance(s, workload.Mmap)]
    offsets = Counter((s.addr - workload.ARENA) % generate.PMD for s in mmaps)
    assert offsets[0] > len(mmaps) * 0.3  # 2 MiB-aligned
    assert offsets[generate.PAGE] > len(mmaps) * 0.1  # misaligned by one page
    ranged = [
        s for _, sc in sample for s in sc.steps
        if isinstance(s, workload.Touch | workload.Munmap | workload.Madvise)
    ]  # fmt: skip
    straddle = [
        s for s in ranged
        if s.addr // generate.PMD != (s.addr + s.length - 1) // generate.PMD
        and (s.addr % generate.PMD or (s.addr + s.length) % generate.PMD)
    ]  # fmt: skip
    assert len(straddle) > len(ranged) * 0.1
    # Shared folios: fork chains, independent processes on one file, private file COW.
    forks = sum(any(isinstance(s, workload.Fork) for s in sc.steps) for _, sc in sample)
    spawned_file = sum(
        any(isinstance(s, workload.Mmap) and s.proc.startswith("s") and s.file for s in sc.steps)
        for _, sc in sample
    )
    cow = sum(
        any(isinstance(s, workload.Mmap) and s.file and not s.shared for s in sc.steps)
        for _, sc in sample
    )
    assert forks > SAMPLE * 0.2 and spawned_file > SAMPLE * 0.03 and cow > SAMPLE * 0.1


def test_generated_workloads_stay_small_and_end_with_probes(sample: list) -> None:
    for _, sc in sample:
        assert 2 <= len(sc.steps) <= 40, sc.name
        assert isinstance(sc.steps[-1], workload.Probe), sc.name
        for step in sc.steps:
            if isinstance(step, workload.Mmap):
                assert step.length <= 4 * generate.MIB + generate.PMD
                assert step.addr + step.length <= workload.ARENA + 64 * generate.MIB


def test_the_model_follows_every_generated_workload(sample: list) -> None:
    for _, sc in sample:
        model.predict(sc)  # a ModelError here is a model bug the fuzzer would report


def test_an_invalid_workload_is_a_generator_error() -> None:
    doc = generate.generate_doc(1, 0)
    doc["steps"].append({"touch": {"map": "nowhere"}})
    with pytest.raises(generate.GeneratorError, match=r"steps\[\d+\]\.touch\.map.*unknown map"):
        generate.validate(doc)


def test_coverage_counts_op_kind_and_alignment(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("""scenarios:
  - name: c
    steps:
      - file: {file: f, kind: memfd, size: 4M}
      - mmap: {map: a, length: 2M, at: 0}
      - mmap: {map: s, length: 2M, at: 4100K, file: f, shared: true}
      - mmap: {map: p, length: 2M, at: 8M, file: f}
      - fork: {child: c}
      - touch: {proc: c, map: s, offset: 4K, length: 4K}
      - mremap: {map: a, offset: 1M, length: 4K, to: 20M, as: b}
      - touch: {map: b}
""")
    (scenario,) = workload.load_workload(path)
    cov = generate.coverage(scenario)
    assert cov[("mmap", "anon", "aligned")] == 1
    assert cov[("mmap", "shmem", "misaligned")] == 1
    assert cov[("mmap", "private-file", "aligned")] == 1
    assert cov[("touch", "shmem", "misaligned")] == 1
    assert cov[("touch", "anon", "aligned")] == 1  # b lives at 20M
    assert cov[("file", "-", "-")] == 1 and cov[("fork", "-", "-")] == 1
    table = fuzz.coverage_table(cov)
    assert table.splitlines()[0].split()[:3] == ["op", "anon/ali", "anon/mis"]


# --- shrinking -----------------------------------------------------------------------------


def _fails(doc: workload_yaml.Doc) -> bool:
    """A stand-in failure: a write to a map that a fork shares, then a probe of it."""
    ops = [next(iter(s)) for s in doc["steps"]]
    return "fork" in ops and any(
        next(iter(s)) == "touch" and s["touch"].get("write") for s in doc["steps"]
    )


def test_shrink_removes_steps_processes_and_sizes() -> None:
    doc = next(d for d in (generate.generate_doc(11, i) for i in range(200)) if _fails(d)
               and len(d["steps"]) >= 10)  # fmt: skip
    calls = []

    def test(docs: list[workload_yaml.Doc]) -> list[tuple[bool, str]]:
        calls.append(len(docs))
        for d in docs:
            generate.validate(d)  # every candidate handed over is a valid workload
        return [(_fails(d), "diff") for d in docs]

    result = shrink.shrink_with(doc, test)
    steps = [next(iter(s)) for s in result.doc["steps"]]
    assert sorted(steps) == ["fork", "mmap", "touch"], steps
    (touch,) = [s["touch"] for s in result.doc["steps"] if "touch" in s]
    assert touch["length"] == "4K" and "offset" not in touch
    # One batch a round, and one more when independent simplifications are tried together.
    assert max(calls) <= shrink.MAX_CANDIDATES and result.rounds <= len(calls) <= 2 * result.rounds
    assert result.diff == "diff"


def test_repair_drops_steps_that_refer_to_removed_ones() -> None:
    doc = {
        "name": "r",
        "steps": [
            {"mmap": {"map": "a", "length": "2M", "at": 0}},
            {"fork": {"child": "c"}},
            {"touch": {"proc": "c", "map": "a"}},
            {"probe": {"label": "p", "map": "a"}},
        ],
    }
    fixed = shrink.repair(shrink._without(doc, {0}))
    assert fixed is None or fixed["steps"] == [{"fork": {"child": "c"}}]
    fixed = shrink.repair(shrink._without(doc, {1}))
    assert fixed is not None
    assert fixed["steps"] == [doc["steps"][0], doc["steps"][3]]


def test_shrink_offline_of_a_model_error() -> None:
    """shrink_offline keeps the smallest doc with the same signature."""
    rng = random.Random(5)
    doc = generate.generate_doc(5, rng.randrange(100))
    target = next(iter(doc["steps"][0]))

    def signature(d: workload_yaml.Doc) -> str | None:
        return "x" if any(next(iter(s)) == target for s in d["steps"]) else None

    small = shrink.shrink_offline(doc, "x", signature)
    assert len(small["steps"]) == 1 and next(iter(small["steps"][0])) == target


# --- signatures ----------------------------------------------------------------------------


def _verdict(problems: list[str], kind: str = "anon", probe_problems: list[str] | None = None
             ) -> compare.ScenarioVerdict:  # fmt: skip
    folio = compare.FolioVerdict("main", 0, 9, {"kind": kind}, {}, "fail", problems)
    probe = compare.ProbeVerdict("p", "main", "fail", "w:1", [folio], probe_problems or [])
    return compare.ScenarioVerdict("s", "fail", "1 probe(s) differ", probes=[probe])


def test_components_name_the_check_and_the_folio_kind() -> None:
    verdict = _verdict(["P of pages 0..3: expected 1, observed 2", "W: expected 1, observed 2"],
                       kind="shmem")  # fmt: skip
    assert fuzz.components(verdict) == ["W-shmem", "P-shmem"]
    verdict = _verdict([], probe_problems=["VMA 0x1-0x2 rss_kb: expected 4, observed 8"])
    assert fuzz.components(verdict) == ["rss-vma"]
    verdict.steps.append({"op": "mprotect", "errno": None, "expected_errno": "ENOMEM"})
    assert fuzz.components(verdict)[-1] == "errno-mprotect"


def test_same_failure_needs_the_signature_among_the_checks() -> None:
    outcome = fuzz.Outcome("a", {}, None, "mismatch", "W-anon", parts=["W-anon", "P-anon"])
    assert fuzz.same_failure(outcome, "P-anon")
    assert not fuzz.same_failure(outcome, "T-anon")
    assert not fuzz.same_failure(fuzz.Outcome("b", {}, None, "environment", None), "W-anon")


def test_durations() -> None:
    assert fuzz.parse_duration("90") == 90
    assert fuzz.parse_duration("10m") == 600
    assert fuzz.parse_duration("1h") == 3600
    with pytest.raises(HarnessError, match="--time 'soon'"):
        fuzz.parse_duration("soon")


def test_compressed_data_log_of_gzip_members(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "data.log"
    first = gzip.compress(b"@SCENARIO a\n@ENDSCENARIO a ok\n", compresslevel=1)
    second = gzip.compress(b"@SCENARIO b\n@STEP 1 mmap ok\n@ENDSCENARIO b ok\n")
    path.write_bytes(first + second[: len(second) - 12])  # the guest died while sending b
    lines = fuzz.read_compressed(path)
    assert lines[:2] == ["@SCENARIO a", "@ENDSCENARIO a ok"]
    assert lines[2:4] == ["@SCENARIO b", "@STEP 1 mmap ok"]
    assert fuzz.read_compressed(tmp_path / "missing.log") == []


class _RecordingRunner:
    """The guest seam, replaced: what the campaign loop hands the guest, in order."""

    def __init__(self) -> None:
        self.boots = 0
        self.timing = fuzz.Timing()
        self.ran: list[str] = []

    def prepare(self, docs: list[workload_yaml.Doc]) -> list:  # type: ignore[type-arg]
        return [(d, generate.validate(d), None) for d in docs]

    def run_prepared(self, batch: list) -> list[fuzz.Outcome]:  # type: ignore[type-arg]
        self.boots += 1
        self.ran += [d["name"] for d, _, _ in batch]
        return [fuzz.Outcome(d["name"], d, sc, "pass") for d, sc, _ in batch]


@pytest.mark.parametrize(("count", "batch"), [(70, 30), (60, 30), (5, 30)])
def test_campaign_runs_exactly_count_workloads_in_order(count: int, batch: int) -> None:
    """Batches are generated one ahead of the guest; none beyond --count is run."""

    class Progress:
        def say(self, message: str) -> None:
            pass

    class Phases:
        progress = Progress()

    cfg = runconfig_for_series_none()
    campaign = fuzz.Campaign(fuzz.FuzzOptions(seed=2, count=count, batch=batch), Path("."))
    runner = _RecordingRunner()
    fuzz._campaign(cfg, campaign, runner, Phases())  # type: ignore[arg-type]
    assert runner.ran == [generate.workload_name(2, i) for i in range(count)]
    assert campaign.workloads == count and runner.boots == -(-count // batch)
    assert sum(campaign.coverage.values()) > 0


def runconfig_for_series_none():  # type: ignore[no-untyped-def]
    from harness import runconfig

    return runconfig.load(CONFIGS / "thp.yaml")


@pytest.mark.parametrize(
    ("name", "difference"),
    [
        ("khugepaged-collapse", "order: expected 0, observed 9"),
        ("khugepaged-collapse-file", "none present in the guest"),
    ],
)
def test_what_khugepaged_collapsed_is_environment(name: str, difference: str) -> None:
    """Captured by campaigns: khugepaged's first scan collapsed a memfd's small pages
    (thp_collapse_alloc +1): on 6.1 the guest shows an order-9 folio the model made of
    order-0 pages; on the series, collapse_file left the range unmapped. Environment, not
    a mismatch; the same records without the counter's growth are a mismatch."""
    from harness import console, machine, records

    data = Path(__file__).parent / "data" / "fuzz"
    (scenario,) = workload.load_workload(data / f"{name}.yaml")
    lines = (data / f"{name}.log").read_text().splitlines()
    quiet = console.ConsoleReport()
    booted = machine.BootResult(quiet, "done")
    rec = records.parse_records(lines).scenarios[0]
    verdict = compare.judge(scenario, rec, quiet, booted, model.predict(scenario))
    assert verdict.verdict == "environment", verdict.diff
    assert "khugepaged" in (verdict.reason or "")
    rec.vmstat["end"]["thp_collapse_alloc"] = rec.vmstat["begin"].get("thp_collapse_alloc", 0)
    verdict = compare.judge(scenario, rec, quiet, booted, model.predict(scenario))
    assert verdict.verdict == "fail"
    assert difference in verdict.diff


class _PanicMachine:
    """The machine seam, replaced: boots that panic in one named workload.

    Console lines carry the real markers and a real panic splat; each workload that ends
    sends a gzip member of minimal records, as the compressed data channel does.
    """

    def __init__(self, culprit: str, cut: str | None = None) -> None:
        self.culprit = culprit
        self.cut = cut
        self.requests: list = []  # type: ignore[type-arg]

    def boot(self, request, on_line=None):  # type: ignore[no-untyped-def]
        import gzip

        from harness import console, initramfs, machine

        self.requests.append(request)
        lines = [f"{initramfs.MARK_BOOTED} 6.1.192 cpus=2"]
        data = b""
        outcome = "done"
        for name in request.jobs:
            lines.append(f"[    1.000000] {initramfs.MARK_BEGIN} {name}")
            if name == self.culprit:
                lines += [
                    "[    1.100000] BUG: Bad page state in process mmwork  pfn:0a000",
                    "[    1.100001] Kernel panic - not syncing: bad page",
                ]
                outcome = "panic"
                break
            member = gzip.compress(f"@SCENARIO {name}\n@ENDSCENARIO {name} ok\n".encode(), 0)
            if name == self.cut:  # the guest died before the UART sent all of it
                member = member[: len(member) // 2]
            data += member
            lines.append(f"[    1.200000] {initramfs.MARK_END} {name} status=0")
        else:
            lines.append(f"[    1.300000] {initramfs.MARK_DONE}")
        request.console_log.write_text("\n".join(lines) + "\n")
        request.data_log.write_bytes(data)
        parser = console.ConsoleParser()
        for line in lines:
            parser.feed(line)
            if on_line:
                on_line(line)
        return machine.BootResult(parser.report, outcome, None, 1.0, [])


def test_a_panic_ends_the_boot_and_the_rest_run_in_the_next(tmp_path: Path) -> None:
    from harness import runconfig

    cfg = runconfig.load(CONFIGS / "thp.yaml")
    docs = [generate.generate_doc(4, i) for i in range(6)]
    # docs[1]'s records are cut short by the panic: it is run again, not called an error.
    vm = _PanicMachine(culprit=docs[2]["name"], cut=docs[1]["name"])
    runner = fuzz.GuestRunner(tmp_path / "bzImage", cfg, "tcg", tmp_path, vm, 60, print)
    outcomes = runner.run(docs)
    assert [o.name for o in outcomes] == [d["name"] for d in docs]
    assert runner.boots == 2
    assert list(vm.requests[1].jobs) == [docs[1]["name"]] + [d["name"] for d in docs[3:]]
    crash = outcomes[2]
    assert crash.status == "crash" and crash.signature == "bad_page"
    assert "Bad page state" in crash.reason
    # The others ran once each, in one boot or the other (their records are minimal here,
    # so the judge calls them errors: no probe came back).
    assert [o.boot for o in outcomes] == [1, 2, 1, 2, 2, 2]
    assert all(o.status == "error" for i, o in enumerate(outcomes) if i != 2)
    # A boot with a finding keeps its logs; the culprit's is there to read.
    assert (tmp_path / "console-1.log").exists()


def test_a_bad_page_is_named_by_its_reason() -> None:
    """The planted bug's splat (console of a real boot): the reason, not dump_stack."""
    from harness import console

    log = Path(__file__).parent / "data" / "fuzz" / "planted-bad-page.log"
    report = console.parse_console(log.read_text().splitlines())
    (splat,) = report.splats
    assert fuzz._splat_signature(splat) == "bad_page-nonzero-pt_mapcount"
