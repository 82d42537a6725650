"""Console classification on captured logs (tests/data/console/README says which are real)."""

from pathlib import Path

from harness.console import ConsoleParser, clean, parse_console

DATA = Path(__file__).parent / "data" / "console"


def parse(name: str):  # type: ignore[no-untyped-def]
    # console.log is split on LF only, as the live reader does (it holds CRs).
    return parse_console((DATA / name).read_text(errors="replace").split("\n"))


def test_clean_boot_has_markers_and_no_splat() -> None:
    report = parse("boot-ok.log")
    assert report.booted and report.done
    assert report.uname == "6.1.192+"
    assert report.started == ["command"] and report.finished == {"command": 0}
    assert report.splats == [] and report.fatal is None


def test_warning_is_attributed_to_the_running_job_with_its_trace() -> None:
    report = parse("warning-in-job.log")
    (splat,) = report.splats
    assert splat.kind == "warning" and not splat.fatal
    assert splat.job == "anon-thp-fork"
    assert splat.headline.startswith("------------[ cut here ]")
    assert any("mm/rmap.c:1431" in line for line in splat.excerpt)
    assert splat.call_trace[0] == "zap_pte_range+0x3c1/0x7a0"
    assert splat.call_trace[-1] == "do_exit+0x2d5/0xa60"
    assert report.finished == {"anon-thp-fork": 0, "anon-thp-cow": 0}
    assert report.done


def test_bad_page_state_is_fatal_and_named() -> None:
    report = parse("bad-page-state.log")
    (splat,) = report.splats
    assert splat.kind == "bad_page" and splat.fatal
    assert splat.job == "shmem-punch"
    assert "page dumped because: nonzero mapcount" in splat.excerpt
    assert "bad_page.cold+0x63/0x94" in splat.call_trace


def test_soft_lockup_then_panic() -> None:
    report = parse("soft-lockup.log")
    kinds = [s.kind for s in report.splats]
    assert kinds[0] == "soft_lockup"
    assert report.fatal is not None and report.fatal.kind == "soft_lockup"
    assert report.fatal.job == "stress"
    assert "unmap_page_range+0x1d5/0x2a0" in report.fatal.call_trace
    assert not report.done


def test_clean_strips_timestamp_cr_and_escapes() -> None:
    assert clean("[   12.345678] hello\r\n") == "hello"
    assert clean("\x1b[0mplain\r") == "plain"


def test_incremental_feed_matches_batch() -> None:
    lines = (DATA / "warning-in-job.log").read_text().splitlines()
    parser = ConsoleParser()
    for line in lines:
        parser.feed(line)
    assert parser.report == parse_console(lines)


def test_real_panic_at_boot() -> None:
    report = parse("panic-at-boot.log")
    assert not report.booted and not report.done
    fatal = report.fatal
    assert fatal is not None and fatal.kind == "panic" and fatal.job is None
    assert (
        fatal.headline
        == "Kernel panic - not syncing: Requested init /no-such-init failed (error -2)."
    )
    assert "kernel_init+0xad/0xfc" in fatal.call_trace
