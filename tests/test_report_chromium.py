"""The HTML report in a real headless Chromium (Debian's chromium): the page loads offline
from file://, its DOM holds every scenario and every folio picture, and its screenshot is
not blank: it has many colours, among them the folio strips' P colours.

Chromium runs as root, so without its sandbox, with a fresh profile and every background
service off; it only ever opens a file:// page. Skipped when chromium is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from harness import cli
from harness.formats import cases, html

DATA = Path(__file__).parent / "data" / "results"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/setup.sh)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    shutil.rmtree(profile, ignore_errors=True)
    argv = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG (Chromium's)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i : i + 3]) for r in rows for i in range(0, stride, bpp)]


@pytest.fixture(scope="module")
def series_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`harness report --html` of the captured configs/series.yaml run."""
    run_dir = tmp_path_factory.mktemp("chromium") / "series"
    shutil.copytree(DATA / "series", run_dir)
    assert cli.main(["report", "--html", str(run_dir)]) == 0
    return run_dir


def test_dom_holds_every_scenario_and_folio(series_report: Path, tmp_path: Path) -> None:
    page = series_report / "report.html"
    proc = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    results = json.loads((series_report / "results.json").read_text())
    in_dom = re.findall(r'<section class="case" id="[^"]+" data-case="([^"]+)"', dom)
    assert in_dom == [html.esc(s["name"]) for s in results["scenarios"]]
    folios = [f for s in results["scenarios"] for p in s["probes"] for f in p["folios"]]
    assert len(re.findall(r'<svg[^>]*class="folio-svg"', dom)) == len(folios)
    for folio in folios:
        assert f'aria-label="{html.esc(cases.folio_name(folio))}"' in dom
    assert "</html>" in dom


def test_screenshot_shows_the_folios(series_report: Path, tmp_path: Path) -> None:
    page = series_report / "report.html"
    shot = series_report / "report.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    print(f"\nscreenshot: {shot}")
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1280, 2000)
    colours = set(pixels)
    assert len(colours) > 50, f"{shot}: only {len(colours)} colours: blank?"
    # The first scenario's folios are on screen: many more pixels of P=1 and of the PTE
    # mapping bar than the legend's 12x12 swatches (144 pixels) hold.
    for hex_colour, least in ((html.P_COLOURS[2], 1000), ("#0a7ea4", 300)):
        rgb = bytes.fromhex(hex_colour[1:])
        count = sum(1 for p in pixels if p == rgb)
        assert count >= least, f"{shot}: {count} pixels of {hex_colour}, want {least}+"
