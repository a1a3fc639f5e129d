"""One self-contained HTML page for a search result: footprints on a small map, thumbnails beside it.

Nothing is fetched when the page is viewed: the map is inline SVG (footprints projected with Web
Mercator, so shapes look right at chip scale, fitted to the footprints' extent, with a lon/lat
graticule and a scale bar at the map's centre latitude), thumbnails are ``data:`` URIs, the CSS and
the few lines of script are inline. Each query has its own section: its footprint in blue, every
match's footprint framed in the colour of its label agreement (as in the PNG figure of
:mod:`rsir_cli.figures`), with a numbered marker so that even a 1 km chip on a continent-wide map
can be seen. Hovering or clicking a match highlights it on the map and in the list, both ways.

Every text is HTML-escaped; ids are never cut, only shortened in the middle with the full id in a
``title`` attribute. The script marks the page when it has run (``data-rendered-matches`` and
``data-rendered-footprints`` on ``<body>``), so a headless browser can check it.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rsir_cli.figures import COLOURS, LEGEND_TEXT

MAP_WIDTH, MAP_HEIGHT = 560, 420
EARTH_RADIUS_M = 6_378_137.0
ID_CHARS = 21  # what fits under a 138-pixel thumbnail in 11 px monospace


@dataclass
class MapMatch:
    """One match: its rank (1 = best), id, distance, labels and place, thumbnail and label agreement."""

    rank: int
    id: str
    distance: float
    labels: list[str] | None = None
    lonlat: np.ndarray | None = None  # (4, 2) corners ul, ur, lr, ll; None or NaN: unknown
    thumbnail: bytes | None = None  # PNG
    agreement: str = "unknown"  # figures.label_agreement: same / some / none / unknown


@dataclass
class MapQuery:
    """One query and its matches in rank order."""

    id: str
    labels: list[str] | None = None
    lonlat: np.ndarray | None = None
    thumbnail: bytes | None = None
    matches: list[MapMatch] = field(default_factory=list)


def short_id(text: str, limit: int = ID_CHARS) -> str:
    """``text`` shortened in the middle (``S2A_MSIL2A_2017…_87_48``) when longer than ``limit``."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head) :]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _rgb(name: str) -> str:
    r, g, b = COLOURS.get(name, COLOURS["unknown"])
    return f"rgb({r},{g},{b})"


def _known(corners: np.ndarray | None) -> np.ndarray | None:
    if corners is None:
        return None
    corners = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    return corners if np.isfinite(corners).all() else None


def _mercator(lonlat: np.ndarray) -> np.ndarray:
    """(..., 2) lon/lat degrees -> Web Mercator metres (x east, y north)."""
    lon = np.radians(lonlat[..., 0])
    lat = np.radians(np.clip(lonlat[..., 1], -85.05, 85.05))
    return np.stack([lon * EARTH_RADIUS_M, np.log(np.tan(np.pi / 4 + lat / 2)) * EARTH_RADIUS_M], axis=-1)


def _nice(value: float) -> float:
    """The largest of 1, 2, 5 x 10^k not above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return max(m * power for m in (1, 2, 5) if m * power <= value)


class _Frame:
    """Maps lon/lat onto the SVG box: Web Mercator, uniform scale, fitted to an extent with a margin."""

    def __init__(self, corners: list[np.ndarray]) -> None:
        points = np.concatenate([c for c in corners]).reshape(-1, 2)
        low, high = points.min(axis=0), points.max(axis=0)
        span = high - low
        pad = np.maximum(span * 0.12, 0.01)  # at least ~1 km around a single chip
        self.lon0, self.lat0 = low - pad
        self.lon1, self.lat1 = high + pad
        box = _mercator(np.array([[self.lon0, self.lat0], [self.lon1, self.lat1]]))
        self.x0, self.y0 = box[0]
        width, height = box[1] - box[0]
        self.scale = min(MAP_WIDTH / width, MAP_HEIGHT / height)
        self.dx = (MAP_WIDTH - width * self.scale) / 2
        self.dy = (MAP_HEIGHT - height * self.scale) / 2
        self.height_m = height

    def xy(self, lonlat: np.ndarray) -> np.ndarray:
        m = _mercator(np.asarray(lonlat, dtype=np.float64))
        x = (m[..., 0] - self.x0) * self.scale + self.dx
        y = MAP_HEIGHT - ((m[..., 1] - self.y0) * self.scale + self.dy)
        return np.stack([x, y], axis=-1)

    def graticule(self) -> tuple[str, float]:
        """Meridians and parallels at a round step, labelled in degrees."""
        step = _nice(max(self.lon1 - self.lon0, self.lat1 - self.lat0) / 4)
        decimals = max(0, -math.floor(math.log10(step)))
        parts = []
        for lon in np.arange(math.ceil(self.lon0 / step) * step, self.lon1, step):
            (x, _), (_, _) = self.xy(np.array([[lon, self.lat0], [lon, self.lat1]]))
            parts.append(f'<line class="grid" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{MAP_HEIGHT}"/>')
            parts.append(f'<text class="grid-label" x="{x + 2:.1f}" y="{MAP_HEIGHT - 4}">{lon:.{decimals}f}°</text>')
        for lat in np.arange(math.ceil(self.lat0 / step) * step, self.lat1, step):
            (_, y) = self.xy(np.array([self.lon0, lat]))
            parts.append(f'<line class="grid" x1="0" y1="{y:.1f}" x2="{MAP_WIDTH}" y2="{y:.1f}"/>')
            parts.append(f'<text class="grid-label" x="3" y="{y - 3:.1f}">{lat:.{decimals}f}°</text>')
        return "".join(parts), step

    def scale_bar(self) -> tuple[str, str]:
        """A bar of a round length at the map's centre latitude, and its caption."""
        centre = (self.lat0 + self.lat1) / 2
        metres_per_px = math.cos(math.radians(centre)) / self.scale
        length = _nice(metres_per_px * MAP_WIDTH / 5)
        px = length / metres_per_px
        text = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
        x, y = MAP_WIDTH - px - 14, MAP_HEIGHT - 30
        bar = (
            f'<g class="scale"><rect x="{x - 4:.1f}" y="{y - 14}" width="{px + 8:.1f}" height="22" rx="3"/>'
            f'<line x1="{x:.1f}" y1="{y}" x2="{x + px:.1f}" y2="{y}"/>'
            f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x:.1f}" y2="{y + 4}"/>'
            f'<line x1="{x + px:.1f}" y1="{y - 4}" x2="{x + px:.1f}" y2="{y + 4}"/>'
            f'<text x="{x + px / 2:.1f}" y="{y - 4}">{_e(text)}</text></g>'
        )
        return bar, f"{text} at {abs(centre):.2f}° {'N' if centre >= 0 else 'S'}"


MARKER_RADIUS = 9


def _marker_positions(centres: list[np.ndarray]) -> list[np.ndarray]:
    """Marker centres near each footprint's centre, moved apart where they would overlap.

    Markers are placed in order (the query, then matches by rank); one that would cover an earlier
    one moves out on a spiral until it is free, and a leader line joins it to its footprint.
    """
    placed: list[np.ndarray] = []
    gap = 2 * MARKER_RADIUS + 2
    for centre in centres:
        spot = centre
        step = 0
        while any(np.hypot(*(spot - other)) < gap for other in placed) and step < 200:
            step += 1
            angle = step * 2.4  # golden-angle spiral: tight packing, no two tries alike
            radius = gap * (0.6 + 0.25 * step) ** 0.5
            spot = centre + radius * np.array([math.cos(angle), math.sin(angle)])
        placed.append(np.clip(spot, MARKER_RADIUS, [MAP_WIDTH - MARKER_RADIUS, MAP_HEIGHT - MARKER_RADIUS]))
    return placed


def _footprint(xy: np.ndarray, marker: np.ndarray, colour: str, key: str, label: str, attrs: str, title: str) -> str:
    points = " ".join(f"{x:.2f},{y:.2f}" for x, y in xy)
    cx, cy = xy.mean(axis=0)
    mx, my = marker
    leader = ""
    if np.hypot(mx - cx, my - cy) > 1:
        leader = (
            f'<line class="leader" x1="{cx:.1f}" y1="{cy:.1f}" x2="{mx:.1f}" y2="{my:.1f}" style="stroke:{colour}"/>'
        )
    return (
        f'<g class="footprint" data-key="{key}" {attrs} tabindex="0"><title>{_e(title)}</title>'
        f'<polygon points="{points}" style="stroke:{colour};fill:{colour}"/>{leader}'
        f'<circle cx="{mx:.1f}" cy="{my:.1f}" r="{MARKER_RADIUS}" style="fill:{colour}"/>'
        f'<text x="{mx:.1f}" y="{my + 3.5:.1f}">{_e(label)}</text></g>'
    )


def _map(index: int, query: MapQuery) -> str:
    query_corners = _known(query.lonlat)
    placed = [(m, c) for m in query.matches if (c := _known(m.lonlat)) is not None]
    everything = ([query_corners] if query_corners is not None else []) + [c for _, c in placed]
    if not everything:
        return '<div class="map empty">no footprint is known for this query or its matches</div>'
    frame = _Frame(everything)
    grid, step = frame.graticule()
    bar, scale_text = frame.scale_bar()
    outlines = [frame.xy(c) for c in everything]
    markers = _marker_positions([xy.mean(axis=0) for xy in outlines])
    if query_corners is not None:
        query_shape = (outlines.pop(0), markers.pop(0))
    shapes = []
    for (match, _), xy, marker in reversed(list(zip(placed, outlines, markers, strict=True))):  # best on top
        title = f"#{match.rank} {match.id} (distance {match.distance:.4g})"
        shapes.append(
            _footprint(
                xy,
                marker,
                _rgb(match.agreement),
                f"q{index}-m{match.rank}",
                str(match.rank),
                f'data-rank="{match.rank}" data-id="{_e(match.id)}"',
                title,
            )
        )
    if query_corners is not None:
        shapes.append(
            _footprint(*query_shape, _rgb("query"), f"q{index}-q", "Q", 'data-query="1"', f"query {query.id}")
        )
    note = f"Web Mercator · graticule every {step:g}° · scale bar {scale_text}"
    return (
        f'<figure class="map"><svg viewBox="0 0 {MAP_WIDTH} {MAP_HEIGHT}" role="img" '
        f'aria-label="footprints of query {_e(query.id)} and its matches">'
        f'<rect class="sea" width="{MAP_WIDTH}" height="{MAP_HEIGHT}"/>{grid}{"".join(shapes)}{bar}</svg>'
        f"<figcaption>{_e(note)}</figcaption></figure>"
    )


def _thumbnail(png: bytes | None, colour: str, alt: str) -> str:
    if png is None:
        return f'<div class="thumb none" style="border-color:{colour}">no image</div>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="thumb" style="border-color:{colour}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _labels(labels: list[str] | None) -> str:
    if labels is None:
        return '<span class="labels unknown">labels unknown</span>'
    text = ", ".join(labels) if labels else "no labels"
    return f'<span class="labels" title="{_e(text)}">{_e(text)}</span>'


def _card(index: int, match: MapMatch) -> str:
    place = "" if _known(match.lonlat) is not None else '<span class="noplace">no location</span>'
    return (
        f'<li class="card" data-key="q{index}-m{match.rank}" data-rank="{match.rank}" data-id="{_e(match.id)}" '
        f'data-agreement="{_e(match.agreement)}" tabindex="0">'
        f"{_thumbnail(match.thumbnail, _rgb(match.agreement), match.id)}"
        f'<span class="caption"><span class="rank">#{match.rank}</span> '
        f'<span class="distance" title="distance">{match.distance:.4g}</span></span>'
        f'<span class="id" title="{_e(match.id)}">{_e(short_id(match.id))}</span>{_labels(match.labels)}{place}</li>'
    )


def _section(index: int, query: MapQuery) -> str:
    cards = "".join(_card(index, m) for m in query.matches)
    return (
        f'<section class="query" data-query-id="{_e(query.id)}"><h2>Query '
        f'<span class="id" title="{_e(query.id)}">{_e(short_id(query.id, 60))}</span></h2>'
        f'<div class="row">{_map(index, query)}<div class="side">'
        f'<div class="card query-card" data-key="q{index}-q">{_thumbnail(query.thumbnail, _rgb("query"), query.id)}'
        f'<span class="rank">query</span>{_labels(query.labels)}</div>'
        f'<ol class="matches">{cards}</ol></div></div></section>'
    )


def _legend() -> str:
    items = [("query", "query")] + list(LEGEND_TEXT)
    return (
        '<ul class="legend">'
        + "".join(
            f'<li><span class="swatch" style="background:{_rgb(key)}"></span>{_e(text)}</li>' for key, text in items
        )
        + "</ul>"
    )


_CSS = """
body{font:14px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:18px;color:#1d1d1d;background:#fff}
h1{font-size:20px;margin:0 0 6px} h2{font-size:16px;margin:18px 0 8px}
.warning{background:#c8102e;color:#fff;font-weight:700;padding:8px 12px;border-radius:4px;margin:6px 0 10px}
.legend{list-style:none;padding:0;margin:4px 0 8px;display:flex;gap:16px;flex-wrap:wrap;font-size:13px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.row{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
.map{margin:0;flex:0 0 auto;width:560px} .map svg{width:560px;height:420px;border:1px solid #bbb;border-radius:4px}
.map.empty{height:120px;display:flex;align-items:center;justify-content:center;border:1px dashed #bbb;color:#666}
figcaption{font-size:12px;color:#555;margin-top:4px}
.sea{fill:#f3f6f8} .grid{stroke:#c9d3da;stroke-width:1} .grid-label{font-size:10px;fill:#6b7780}
.footprint polygon{fill-opacity:.18;stroke-width:2} .footprint circle{stroke:#fff;stroke-width:1.5}
.leader{stroke-width:1.5}
.footprint text{font-size:10px;font-weight:700;fill:#fff;text-anchor:middle;pointer-events:none}
.footprint{cursor:pointer} .footprint.hl polygon{fill-opacity:.45;stroke-width:4} .footprint.hl circle{r:12;stroke:#111}
.scale rect{fill:#fff;fill-opacity:.85} .scale line{stroke:#222;stroke-width:2} .scale text{font-size:11px;text-anchor:middle}
.side{flex:1 1 420px;min-width:300px}
.matches{list-style:none;padding:0;margin:8px 0 0;display:grid;grid-template-columns:repeat(auto-fill,150px);gap:10px}
.card{display:flex;flex-direction:column;gap:1px;font-size:12px;padding:4px;border-radius:4px;cursor:pointer;outline:2px solid transparent;min-width:0}
.card.hl{outline-color:#111;background:#f1f1f1} .query-card{max-width:150px;cursor:default}
.thumb{width:128px;height:128px;border:5px solid;image-rendering:auto;object-fit:cover;display:block;box-sizing:content-box}
.thumb.none{display:flex;align-items:center;justify-content:center;background:#e1e1e1;color:#666}
.rank{font-weight:700} .distance{color:#444;margin-left:4px}
.id{font:11px ui-monospace,Menlo,Consolas,monospace;white-space:nowrap} h2 .id{font-size:15px}
.labels{color:#444;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;max-width:140px} .labels.unknown,.noplace{color:#888;font-style:italic}
"""

_SCRIPT = """
(function () {
  var groups = {};
  var items = document.querySelectorAll('[data-key]');
  items.forEach(function (el) { (groups[el.dataset.key] = groups[el.dataset.key] || []).push(el); });
  var pinned = null;
  function mark(key, on) { (groups[key] || []).forEach(function (el) { el.classList.toggle('hl', on); }); }
  items.forEach(function (el) {
    var key = el.dataset.key;
    el.addEventListener('mouseenter', function () { mark(key, true); });
    el.addEventListener('mouseleave', function () { if (pinned !== key) { mark(key, false); } });
    el.addEventListener('click', function () {
      if (pinned && pinned !== key) { mark(pinned, false); }
      pinned = pinned === key ? null : key;
      mark(key, pinned === key);
      if (pinned) {
        (groups[key] || []).forEach(function (other) {
          if (other !== el && other.scrollIntoView) { other.scrollIntoView({block: 'nearest'}); }
        });
      }
    });
  });
  document.body.dataset.renderedMatches = String(document.querySelectorAll('li.card[data-rank]').length);
  document.body.dataset.renderedFootprints = String(document.querySelectorAll('g.footprint[data-rank]').length);
})();
"""


def render_search_page(title: str, queries: Sequence[MapQuery], warning: str | None = None) -> str:
    """The whole page (HTML text) for ``queries`` and their matches.

    Args:
        title: the heading (e.g. the model, dataset and distance).
        queries: each query with its matches in rank order.
        warning: shown on top in red when given (e.g. the RANDOM WEIGHTS warning).

    Returns:
        A complete HTML5 document that needs no network to view.
    """
    total = sum(len(q.matches) for q in queries)
    banner = f'<div class="warning" role="alert">{_e(warning)}</div>' if warning else ""
    sections = "".join(_section(i, q) for i, q in enumerate(queries))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No fetches at all, even by mistake: a strict policy that allows only inline code and data: images.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f'<body data-expected-matches="{total}"><h1>{_e(title)}</h1>{banner}{_legend()}{sections}'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
