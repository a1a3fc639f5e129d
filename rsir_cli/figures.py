"""The retrieval picture: each query beside its top-k matches, framed by label agreement.

One row per query: the query (blue frame, with its labels when known), then the matches in rank
order. Each image is a true-colour thumbnail (B04, B03, B02 unless told otherwise). All thumbnails
of one figure share one contrast stretch: per band, from the 2nd to the 98th percentile of the
valid pixels of all its images together (QGIS's "cumulative count cut", taken over the figure), so
the same reflectance is the same colour in every thumbnail and the images can be compared; the
header says which bands are shown and how they are stretched. A match's frame says how its labels
relate to the query's: green = the same label set, orange = at least one shared label, red = none
shared, grey = unknown (the query's or the match's labels are not known). Below each image: rank,
id and distance; an id too long for its line is shortened in the middle, so that both its start
and its distinguishing end (tile and patch position) stay visible. Drawn with Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
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
TITLE_LINE = 16
HEADER = TITLE_LINE + 2 * LINE + 4  # the title, the bands and stretch line, a warning line
LEGEND = 24
QUERY_GAP = 12  # extra space between the query and its matches
TRUE_COLOUR = ("B04", "B03", "B02")
STRETCH = (2.0, 98.0)  # percentiles of the figure's valid pixels that become 0 and 255

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
    caption: list[str] = field(default_factory=list)  # a line of one word (an id) is shortened in the middle
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


def valid_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: finite in all three bands and not 0 in all three (Sentinel-2's nodata value)."""
    image = np.asarray(image, dtype=np.float64)
    return np.isfinite(image).all(axis=0) & (image != 0).any(axis=0)


def stretch_limits(
    images: Sequence[np.ndarray | None], low: float = STRETCH[0], high: float = STRETCH[1]
) -> np.ndarray:
    """(3, 2): per band, the ``low`` and ``high`` percentiles of the valid pixels of all ``images`` together.

    Args:
        images: (3, H, W) red, green, blue arrays (any sizes; None entries are skipped).
        low: the percentile that becomes 0.
        high: the percentile that becomes 255.

    Returns:
        The limits, one (low, high) row per band; NaN for a band with no valid pixel.
    """
    limits = np.full((3, 2), np.nan)
    pixels = [np.asarray(image, dtype=np.float64)[:, valid_pixels(image)] for image in images if image is not None]
    pixels = [p for p in pixels if p.size]
    if pixels:
        together = np.concatenate(pixels, axis=1)
        limits[:] = np.percentile(together, [low, high], axis=1).T
    return limits


def true_colour(
    image: np.ndarray, low: float = STRETCH[0], high: float = STRETCH[1], limits: np.ndarray | None = None
) -> np.ndarray:
    """(3, H, W) red, green, blue -> (H, W, 3) uint8, each band stretched linearly between two limits.

    Args:
        image: the three bands, in any units.
        low: without ``limits``, the percentile of the image's own band that becomes 0.
        high: without ``limits``, the percentile that becomes 255.
        limits: (3, 2) per-band (value -> 0, value -> 255), e.g. :func:`stretch_limits` of a whole
            figure, so that several images share one stretch.

    Returns:
        The 8-bit image: values at or below the low limit are 0, at or above the high one 255; a band
        whose limits are equal (or unknown) is 0.
    """
    image = np.asarray(image, dtype=np.float64)
    if limits is None:
        limits = np.full((3, 2), np.nan)
        for channel in range(3):
            finite = image[channel][np.isfinite(image[channel])]
            if finite.size:
                limits[channel] = np.percentile(finite, [low, high])
    out = np.zeros((*image.shape[1:], 3), dtype=np.uint8)
    for channel, (lo, hi) in enumerate(np.asarray(limits, dtype=np.float64)):
        if not hi > lo:  # also NaN: nothing to stretch
            continue
        scaled = np.nan_to_num(np.clip((image[channel] - lo) / (hi - lo), 0.0, 1.0))
        out[..., channel] = np.round(scaled * 255).astype(np.uint8)
    return out


def stretch_note(bands: Sequence[str], low: float = STRETCH[0], high: float = STRETCH[1]) -> str:
    """The header line that says what the thumbnails show, e.g. ``true colour: B04, B03, B02; ...``."""
    kind = "true colour" if tuple(bands) == TRUE_COLOUR else "red, green, blue"
    return f"{kind}: {', '.join(bands)}; one stretch for all images, {low:g}-{high:g} % of their pixels per band"


def shorten_middle(text: str, fits: Callable[[str], bool], ellipsis: str = "…") -> str:
    """``text`` with its middle replaced by ``ellipsis`` so that ``fits(result)``; the end keeps a little more.

    Args:
        text: e.g. a sample id, whose start (product, date) and end (tile, patch position) both matter.
        fits: whether a candidate string fits (e.g. its width in pixels).
        ellipsis: what stands for the characters left out.

    Returns:
        ``text`` itself if it fits, else its longest ``start + ellipsis + end`` that fits.
    """
    if fits(text):
        return text
    for kept in range(len(text) - 1, 0, -1):
        end = (kept * 3 + 4) // 5  # 60 %, rounded up: the distinguishing suffix
        candidate = text[: kept - end] + ellipsis + text[len(text) - end :]
        if fits(candidate):
            return candidate
    return ellipsis


def figure_size(rows: int, matches: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``rows`` queries with ``matches`` images each."""
    cell_w = THUMB + 2 * FRAME
    cell_h = THUMB + 2 * FRAME + 4 + CAPTION_LINES * LINE
    width = 2 * MARGIN + (matches + 1) * cell_w + matches * GAP + QUERY_GAP
    height = 2 * MARGIN + HEADER + rows * cell_h + max(0, rows - 1) * ROW_GAP + LEGEND
    return width, height


def panel_origin(row: int, column: int) -> tuple[int, int]:
    """(x, y) in pixels of the top-left corner of a panel's frame; column 0 is the query, 1 the first match."""
    cell_w = THUMB + 2 * FRAME
    cell_h = cell_w + 4 + CAPTION_LINES * LINE
    x = MARGIN + column * (cell_w + GAP) + (QUERY_GAP if column else 0)
    return x, MARGIN + HEADER + row * (cell_h + ROW_GAP)


def _font(size: int = 11) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _ellipsis(font: Any) -> str:
    from PIL import ImageFont

    return "…" if isinstance(font, ImageFont.FreeTypeFont) else "..."  # the bitmap font is Latin-1


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` shortened at its end with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    ellipsis = _ellipsis(font)
    while text and draw.textlength(text + ellipsis, font=font) > width:
        text = text[:-1]
    return text + ellipsis


def _fit_caption(draw: Any, text: str, font: Any, width: int) -> str:
    """A one-word line (an id) shortened in the middle, any other line at its end."""
    if " " in text.strip():
        return _fit(draw, text, font, width)
    return shorten_middle(text, lambda t: draw.textlength(t, font=font) <= width, _ellipsis(font))


def _draw_panel(canvas: Any, draw: Any, panel: Panel, x: int, y: int, font: Any, limits: np.ndarray) -> None:
    from PIL import Image

    colour = COLOURS.get(panel.frame, COLOURS["unknown"])
    draw.rectangle([x, y, x + THUMB + 2 * FRAME - 1, y + THUMB + 2 * FRAME - 1], fill=colour)
    if panel.image is not None:
        thumb = Image.fromarray(true_colour(panel.image, limits=limits)).resize(
            (THUMB, THUMB), Image.Resampling.BILINEAR
        )
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
            _fit_caption(draw, line, font, THUMB + 2 * FRAME),
            fill=(20, 20, 20),
            font=font,
        )


def retrieval_figure(
    rows: Sequence[tuple[Panel, Sequence[Panel]]],
    title: str,
    warning: str | None = None,
    *,
    bands: Sequence[str] = TRUE_COLOUR,
    stretch: tuple[float, float] = STRETCH,
) -> Any:
    """Draw the figure: one row per (query panel, match panels).

    Args:
        rows: (query, matches) per row.
        title: the first header line.
        warning: printed in red under the header (e.g. RANDOM WEIGHTS).
        bands: the bands the panels' images hold, as red, green, blue (named in the header).
        stretch: the low and high percentiles of all the figure's valid pixels, per band, that
            become 0 and 255 in every thumbnail alike.

    Returns:
        A PIL image (RGB).
    """
    from PIL import Image, ImageDraw

    matches = max((len(m) for _, m in rows), default=0)
    width, height = figure_size(len(rows), matches)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, bold = _font(11), _font(13)
    text_width = width - 2 * MARGIN
    draw.text((MARGIN, MARGIN), _fit(draw, title, bold, text_width), fill=(0, 0, 0), font=bold)
    note = stretch_note(bands, *stretch)
    draw.text((MARGIN, MARGIN + TITLE_LINE), _fit(draw, note, font, text_width), fill=(60, 60, 60), font=font)
    if warning:
        y = MARGIN + TITLE_LINE + LINE
        draw.text((MARGIN, y), _fit(draw, warning, font, text_width), fill=(200, 0, 0), font=font)
    limits = stretch_limits([panel.image for query, found in rows for panel in (query, *found)], *stretch)
    for row, (query, found) in enumerate(rows):
        for column, panel in enumerate((query, *found)):
            _draw_panel(canvas, draw, panel, *panel_origin(row, column), font, limits)
    y = height - MARGIN - LEGEND + 8
    x = MARGIN
    for key, text in LEGEND_TEXT:
        draw.rectangle([x, y, x + 12, y + 12], fill=COLOURS[key])
        draw.text((x + 18, y), text, fill=(20, 20, 20), font=font)
        x += 30 + int(draw.textlength(text, font=font))
    return canvas


def png_bytes(image: Any) -> bytes:
    """The PNG encoding of a PIL image.

    Args:
        image: a PIL image, e.g. from :func:`retrieval_figure`.

    Returns:
        The bytes of the PNG file.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
