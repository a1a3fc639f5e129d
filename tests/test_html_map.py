"""The search page: escaped, self-contained, and in a real headless Chromium its script runs and shows every match."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsir_cli.figures import COLOURS
from rsir_cli.html_map import MapMatch, MapQuery, render_search_page, short_id

EVIL_ID = (
    "<script>document.body.dataset.pwned='script'</script><img src=x onerror=\"document.body.dataset.pwned='img'\">&"
)
WARNING = "RANDOM WEIGHTS: these embeddings come from an untrained network"


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _quad(lon: float, lat: float, size: float = 0.02) -> np.ndarray:
    return np.array([[lon, lat + size], [lon + size, lat + size], [lon + size, lat], [lon, lat]])


def make_queries() -> list[MapQuery]:
    first = MapQuery(
        id="S2A_MSIL2A_20170613T101031_87_48",
        labels=["Pastures"],
        lonlat=_quad(14.9, 48.2),
        thumbnail=_png((10, 120, 10)),
        matches=[
            MapMatch(
                1, "S2A_MSIL2A_20170617T113321_36_85", 0.5, ["Pastures"], _quad(14.95, 48.21), _png((1, 2, 3)), "same"
            ),
            MapMatch(2, EVIL_ID, 1.25, ["Pastures", "Water bodies"], _quad(14.9, 48.25), None, "some"),
            MapMatch(3, "S2B_MSIL2A_20170924T93020_69_24", 2.0, [], _quad(14.91, 48.2), _png((200, 0, 0)), "none"),
            MapMatch(4, "no-place", 3.0, None, None, _png((0, 0, 200)), "unknown"),
        ],
    )
    second = MapQuery(
        id="query-two",
        labels=None,
        lonlat=None,
        thumbnail=None,
        matches=[
            MapMatch(1, "far-north", 0.1, ["Coniferous forest"], _quad(27.0, 62.8), None, "unknown"),
            MapMatch(2, "far-south", 0.2, ["Coniferous forest"], _quad(-8.0, 39.3), None, "unknown"),
        ],
    )
    return [first, second]


class _Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(page)
    return parser.tags


def test_short_ids_keep_both_ends_and_the_full_id_is_in_a_title() -> None:
    long = "S2A_MSIL2A_20170613T101031_87_48"
    short = short_id(long)
    assert len(short) == 21 and short.startswith("S2A_MSIL2A") and short.endswith("031_87_48") and "\u2026" in short
    assert short_id("short") == "short"
    page = render_search_page("t", make_queries())
    titles = [a.get("title") for _, a in elements(page)]
    assert long in titles and EVIL_ID in titles  # the full ids, unescaped once parsed


def test_everything_is_escaped_and_nothing_comes_from_the_network() -> None:
    page = render_search_page("<b>title</b>", make_queries(), warning=WARNING)
    assert "<script>document" not in page and "<img src=x" not in page and "<b>title</b>" not in page
    tags = elements(page)
    assert [t for t, _ in tags].count("script") == 1  # our own, inline
    for _, attributes in tags:
        for name in ("src", "href", "xlink:href", "action"):
            value = attributes.get(name)
            assert value is None or value.startswith("data:image/png;base64,"), (name, value)
    assert not re.search(r"url\(|@import|https?://", page.split("</style>")[0].split("<style>")[1])
    # Thumbnails are the PNG bytes given, inline.
    sources = [a["src"] for t, a in tags if t == "img"]
    assert base64.b64decode(sources[1].split(",", 1)[1]) == _png((1, 2, 3))


def test_one_footprint_per_located_match_and_one_card_per_match() -> None:
    page = render_search_page("t", make_queries())
    tags = elements(page)
    footprints = [a for t, a in tags if t == "g" and "data-rank" in a]
    cards = [a for t, a in tags if t == "li" and "data-rank" in a]
    assert [(a["data-key"], a["data-id"]) for a in cards] == [
        ("q0-m1", "S2A_MSIL2A_20170617T113321_36_85"),
        ("q0-m2", EVIL_ID),
        ("q0-m3", "S2B_MSIL2A_20170924T93020_69_24"),
        ("q0-m4", "no-place"),
        ("q1-m1", "far-north"),
        ("q1-m2", "far-south"),
    ]
    assert sorted(a["data-key"] for a in footprints) == ["q0-m1", "q0-m2", "q0-m3", "q1-m1", "q1-m2"]
    assert [a["data-agreement"] for a in cards[:4]] == ["same", "some", "none", "unknown"]
    r, g, b = COLOURS["some"]
    assert f"rgb({r},{g},{b})" in page  # the PNG figure's frame colours


def test_footprints_land_where_their_longitudes_and_latitudes_say() -> None:
    page = render_search_page("t", make_queries()[1:])
    polygons = re.findall(r'<polygon points="([^"]+)"', page)
    centres = [np.array([list(map(float, p.split(","))) for p in poly.split()]).mean(axis=0) for poly in polygons]
    by_key = dict(zip(re.findall(r'<g class="footprint" data-key="([^"]+)"', page), centres, strict=True))
    north, south = by_key["q0-m1"], by_key["q0-m2"]
    assert north[0] > south[0] and north[1] < south[1]  # east is right, north is up (SVG y grows down)


# ------------------------------------------------------------------------- in a real browser
def chromium() -> str:
    for name in (os.environ.get("RSIR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    pytest.skip("no Chromium binary (apt-get install chromium, or set RSIR_CHROMIUM)")


def run_chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        *extra,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_the_page_runs_in_chromium_and_shows_every_match(tmp_path: Path) -> None:
    queries = make_queries()
    page = tmp_path / "search.html"
    page.write_text(render_search_page("prithvi · bigearthnet", queries, warning=WARNING), encoding="utf-8")
    result = run_chromium(tmp_path, page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_errors(result.stderr) == []
    tags = elements(result.stdout)
    body = next(a for t, a in tags if t == "body")
    assert body.get("data-rendered-matches") == "6" and body.get("data-rendered-footprints") == "5"
    assert "data-pwned" not in body  # the hostile id did not run
    shown = {a["data-id"] for t, a in tags if t == "li" and "data-id" in a}
    assert shown == {m.id for q in queries for m in q.matches}
    assert WARNING in result.stdout


def test_hovering_a_card_highlights_its_footprint_and_back(tmp_path: Path) -> None:
    """The page's own script, driven by synthetic pointer events from a script appended to the page."""
    probe = """<script>
    var card = document.querySelector('li.card[data-key="q0-m3"]');
    var shape = document.querySelector('g.footprint[data-key="q0-m3"]');
    var other = document.querySelector('g.footprint[data-key="q0-m1"]');
    card.dispatchEvent(new MouseEvent('mouseenter'));
    var lit = shape.classList.contains('hl') && !other.classList.contains('hl');
    card.dispatchEvent(new MouseEvent('mouseleave'));
    var off = !shape.classList.contains('hl');
    other.dispatchEvent(new MouseEvent('click'));
    var pinned = document.querySelector('li.card[data-key="q0-m1"]').classList.contains('hl');
    other.dispatchEvent(new MouseEvent('mouseleave'));
    var stays = document.querySelector('li.card[data-key="q0-m1"]').classList.contains('hl');
    document.body.dataset.probe = [lit, off, pinned, stays].join(',');
    </script></body>"""
    page = tmp_path / "probe.html"
    page.write_text(render_search_page("t", make_queries()).replace("</body>", probe), encoding="utf-8")
    result = run_chromium(tmp_path, page, "--dump-dom")
    assert console_errors(result.stderr) == []
    body = next(a for t, a in elements(result.stdout) if t == "body")
    assert body.get("data-probe") == "true,true,true,true"


@pytest.mark.slow
def test_screenshot_shows_the_warning_the_frames_and_the_map(tmp_path: Path) -> None:
    page = tmp_path / "search.html"
    page.write_text(render_search_page("prithvi · bigearthnet", make_queries(), warning=WARNING), encoding="utf-8")
    shot = tmp_path / "search.png"
    result = run_chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    colours = {tuple(p) for p in np.unique(pixels, axis=0)}
    assert (200, 16, 46) in colours  # the red warning banner
    assert COLOURS["query"] in colours and COLOURS["same"] in colours and COLOURS["none"] in colours  # frames
