"""The retrieval picture: each query beside its top-k matches, framed by label agreement.

One row per query: the query (blue frame, with its labels when known), then the matches in rank
order. Each image is a true-colour thumbnail (B04, B03, B02) with a 2-98 % percentile stretch of
each band (QGIS's default "cumulative count cut"; it also takes out the blue cast of haze in
top-of-atmosphere data). A match's frame says how
its labels relate to the query's: green = the same label set, orange = at least one shared
label, red = none shared, grey = unknown (the query's or the match's labels are not known).
Below each image: rank, id and distance. Drawn with Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

THUMB = 128
FRAME = 5
GAP = 10
MARGIN = 14
CAPTION_LINES = 3
LINE = 13
ROW_GAP = 14
HEADER = 26
LEGEND = 24
QUERY_GAP = 12  # extra space between the query and its matches

COLOURS: dict[str, tuple[int, int, int]] = {
    "query": (40, 90, 200),
    "same": (0, 158, 60),
    "some": (245, 140, 0),
    "none": (215, 25, 28),
    "unknown": (150, 150, 150),
}
LEGEND_TEXT = (
    ("same", "same labels"),
    ("some", "a shared label"),
    ("none", "no shared label"),
    ("unknown", "labels unknown"),
)


@dataclass
class Panel:
    """One framed image of the figure."""

    image: np.ndarray | None  # (3, H, W) red, green, blue in any units; None draws a placeholder
    caption: list[str] = field(default_factory=list)
    frame: str = "unknown"
    placeholder: str = "no image"


def label_agreement(query: Sequence[str] | None, match: Sequence[str] | None) -> str:
    """``same``, ``some``, ``none`` or ``unknown`` (either label set not known)."""
    if query is None or match is None:
        return "unknown"
    q, m = set(query), set(match)
    if q == m:
        return "same"
    return "some" if q & m else "none"


def true_colour(image: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """(3, H, W) red, green, blue -> (H, W, 3) uint8, each band stretched from its ``low`` to ``high`` percentile.

    Values at or below the low percentile become 0, at or above the high one 255; a constant band is 0.
    """
    image = np.asarray(image, dtype=np.float64)
    out = np.zeros((*image.shape[1:], 3), dtype=np.uint8)
    for channel in range(3):
        band = image[channel]
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            continue
        lo, hi = np.percentile(finite, [low, high])
        if hi <= lo:
            continue
        scaled = np.nan_to_num(np.clip((band - lo) / (hi - lo), 0.0, 1.0))
        out[..., channel] = np.round(scaled * 255).astype(np.uint8)
    return out


def figure_size(rows: int, matches: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``rows`` queries with ``matches`` images each."""
    cell_w = THUMB + 2 * FRAME
    cell_h = THUMB + 2 * FRAME + 4 + CAPTION_LINES * LINE
    width = 2 * MARGIN + (matches + 1) * cell_w + matches * GAP + QUERY_GAP
    height = 2 * MARGIN + HEADER + rows * cell_h + max(0, rows - 1) * ROW_GAP + LEGEND
    return width, height


def _font(size: int = 11) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _draw_panel(canvas: Any, draw: Any, panel: Panel, x: int, y: int, font: Any) -> None:
    from PIL import Image

    colour = COLOURS.get(panel.frame, COLOURS["unknown"])
    draw.rectangle([x, y, x + THUMB + 2 * FRAME - 1, y + THUMB + 2 * FRAME - 1], fill=colour)
    if panel.image is not None:
        thumb = Image.fromarray(true_colour(panel.image)).resize((THUMB, THUMB), Image.Resampling.BILINEAR)
        canvas.paste(thumb, (x + FRAME, y + FRAME))
    else:
        draw.rectangle([x + FRAME, y + FRAME, x + FRAME + THUMB - 1, y + FRAME + THUMB - 1], fill=(225, 225, 225))
        for i, line in enumerate(panel.placeholder.split("\n")[:4]):
            draw.text(
                (x + FRAME + 6, y + FRAME + THUMB // 2 - 20 + i * LINE),
                _fit(draw, line, font, THUMB - 12),
                fill=(90, 90, 90),
                font=font,
            )
    for i, line in enumerate(panel.caption[:CAPTION_LINES]):
        draw.text(
            (x, y + THUMB + 2 * FRAME + 4 + i * LINE),
            _fit(draw, line, font, THUMB + 2 * FRAME),
            fill=(20, 20, 20),
            font=font,
        )


def retrieval_figure(rows: Sequence[tuple[Panel, Sequence[Panel]]], title: str, warning: str | None = None) -> Any:
    """Draw the figure: one row per (query panel, match panels). Returns a PIL image (RGB).

    ``warning`` (e.g. RANDOM WEIGHTS) is printed in red under the title.
    """
    from PIL import Image, ImageDraw

    matches = max((len(m) for _, m in rows), default=0)
    width, height = figure_size(len(rows), matches)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, bold = _font(11), _font(13)
    draw.text((MARGIN, MARGIN), _fit(draw, title, bold, width - 2 * MARGIN), fill=(0, 0, 0), font=bold)
    if warning:
        draw.text((MARGIN, MARGIN + 14), _fit(draw, warning, font, width - 2 * MARGIN), fill=(200, 0, 0), font=font)
    cell_w = THUMB + 2 * FRAME
    cell_h = THUMB + 2 * FRAME + 4 + CAPTION_LINES * LINE
    y = MARGIN + HEADER
    for query, found in rows:
        _draw_panel(canvas, draw, query, MARGIN, y, font)
        x = MARGIN + cell_w + GAP + QUERY_GAP
        for panel in found:
            _draw_panel(canvas, draw, panel, x, y, font)
            x += cell_w + GAP
        y += cell_h + ROW_GAP
    y = height - MARGIN - LEGEND + 8
    x = MARGIN
    for key, text in LEGEND_TEXT:
        draw.rectangle([x, y, x + 12, y + 12], fill=COLOURS[key])
        draw.text((x + 18, y), text, fill=(20, 20, 20), font=font)
        x += 30 + int(draw.textlength(text, font=font))
    return canvas


def png_bytes(image: Any) -> bytes:
    """The PNG encoding of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
