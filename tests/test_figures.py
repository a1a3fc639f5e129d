"""The retrieval figure: percentile stretch, label agreement, layout and frame colours."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rsir_cli import figures
from rsir_cli.figures import Panel, label_agreement, retrieval_figure, true_colour


def test_label_agreement() -> None:
    assert label_agreement(["forest", "water"], ["water", "forest"]) == "same"
    assert label_agreement(["forest", "water"], ["water"]) == "some"
    assert label_agreement(["forest"], ["urban"]) == "none"
    assert label_agreement([], []) == "same"
    assert label_agreement(None, ["urban"]) == "unknown"
    assert label_agreement(["urban"], None) == "unknown"


def test_true_colour_stretches_each_band_from_its_2nd_to_98th_percentile() -> None:
    ramp = np.arange(101, dtype=np.float64).reshape(1, 101)  # percentiles 2 and 98 are 2 and 98
    image = np.stack([ramp, ramp * 10 + 500, np.full_like(ramp, 7.0)])
    rgb = true_colour(image)
    assert rgb.shape == (1, 101, 3) and rgb.dtype == np.uint8
    # (50 - 2) / 96 * 255 = 127.5 -> 128; at or below 2 -> 0; at or above 98 -> 255.
    assert rgb[0, 50, 0] == 128 and rgb[0, 2, 0] == 0 and rgb[0, 0, 0] == 0 and rgb[0, 98, 0] == 255
    np.testing.assert_array_equal(rgb[0, :, 1], rgb[0, :, 0])  # a band's own offset and gain do not matter
    assert not rgb[0, :, 2].any()  # a constant band has nothing to stretch
    with_nan = image.copy()
    with_nan[0, 0, 10] = np.nan
    assert true_colour(with_nan)[0, 10, 0] == 0


def _solid(red: float, green: float, blue: float) -> np.ndarray:
    image = np.zeros((3, 20, 20))
    image[:, :, :10] = np.array([red, green, blue])[:, None, None]  # left half coloured, right half black
    return image


def test_layout_frames_and_placeholders() -> None:
    query = Panel(_solid(1, 0, 0), ["query", "q1", "labels: forest"], "query")
    matches = [
        Panel(_solid(1, 0, 0), ["#1  d = 0", "a", "forest"], "same"),
        Panel(_solid(0, 1, 0), ["#2  d = 3", "b", "forest, water"], "some"),
        Panel(None, ["#3  d = 5", "c", ""], "none", placeholder="image not on disk"),
        Panel(_solid(0, 0, 1), ["#4  d = 9", "d", ""], "unknown"),
        Panel(_solid(0, 0, 1), ["#5  d = 9", "e", ""], "unknown"),
    ]
    picture = retrieval_figure([(query, matches), (query, matches[:2])], "title", warning="RANDOM WEIGHTS")
    f = figures
    cell_w = f.THUMB + 2 * f.FRAME  # a framed thumbnail
    row_h = cell_w + 4 + f.CAPTION_LINES * f.LINE  # and its caption lines
    # Six cells with gaps (one wider after the query) and margins; two rows under the header, a legend.
    width = f.MARGIN + 6 * cell_w + 5 * f.GAP + f.QUERY_GAP + f.MARGIN
    height = f.MARGIN + f.HEADER + 2 * row_h + f.ROW_GAP + f.LEGEND + f.MARGIN
    assert picture.size == (width, height) == figures.figure_size(2, 5)
    top = f.MARGIN + f.HEADER
    first_match = f.MARGIN + cell_w + f.GAP + f.QUERY_GAP
    assert f.panel_origin(0, 0) == (f.MARGIN, top) and f.panel_origin(0, 1) == (first_match, top)
    assert f.panel_origin(1, 3) == (first_match + 2 * (cell_w + f.GAP), top + row_h + f.ROW_GAP)
    pixels = np.asarray(picture)
    assert tuple(pixels[top + 1, f.MARGIN + 1]) == f.COLOURS["query"]
    for i, key in enumerate(["same", "some", "none", "unknown", "unknown"]):
        x = first_match + i * (cell_w + f.GAP)
        assert tuple(pixels[top + 1, x + 1]) == f.COLOURS[key], key
    # The query thumbnail: red on the left, black on the right.
    inner = f.MARGIN + f.FRAME
    assert tuple(pixels[top + f.FRAME + f.THUMB // 2, inner + f.THUMB // 6]) == (255, 0, 0)
    assert tuple(pixels[top + f.FRAME + f.THUMB // 2, inner + f.THUMB * 5 // 6]) == (0, 0, 0)
    # Match 3 has no image: a light grey placeholder.
    x = first_match + 2 * (cell_w + f.GAP)
    assert tuple(pixels[top + f.FRAME + 10, x + f.FRAME + f.THUMB - 8]) == (225, 225, 225)
    # The second row has two matches; the rest of it stays white.
    second = top + row_h + f.ROW_GAP
    assert tuple(pixels[second + 1, first_match + 1]) == f.COLOURS["same"]
    assert tuple(pixels[second + 1, first_match + 2 * (cell_w + f.GAP) + 1]) == (255, 255, 255)
    decoded = Image.open(io.BytesIO(figures.png_bytes(picture)))
    assert decoded.format == "PNG" and decoded.size == picture.size and decoded.mode == "RGB"


def _halves(left: tuple[float, float, float], right: tuple[float, float, float]) -> np.ndarray:
    image = np.zeros((3, 20, 20))
    image[:, :, :10] = np.array(left)[:, None, None]
    image[:, :, 10:] = np.array(right)[:, None, None]
    return image


def _thumbnail_pixel(pixels: np.ndarray, column: int, side: str) -> tuple[int, ...]:
    """The colour at the middle of the left or right half of the thumbnail in ``column`` (0 = the query)."""
    f = figures
    x, y = f.panel_origin(0, column)
    x += f.FRAME + (f.THUMB // 4 if side == "left" else f.THUMB * 3 // 4)
    return tuple(pixels[y + f.FRAME + f.THUMB // 2, x])


def test_all_thumbnails_share_one_stretch() -> None:
    # The same forest (left halves) beside a dark field in one image and a bright one in the other:
    # stretched per image they came out as different colours; with one stretch they are the same.
    forest = (300.0, 500.0, 250.0)
    query = Panel(_halves(forest, (100.0, 100.0, 100.0)), ["query", "q", ""], "query")
    match = Panel(_halves(forest, (3000.0, 2900.0, 2800.0)), ["#1  d = 0", "m", ""], "same")
    pixels = np.asarray(retrieval_figure([(query, [match])], "title"))
    assert _thumbnail_pixel(pixels, 0, "left") == _thumbnail_pixel(pixels, 1, "left")
    # Hand-computed: per band, half the pixels of the two images are the forest and a quarter each
    # the dark and the bright field, so the 2nd percentile is the dark field and the 98th the bright
    # one; red (300 - 100) / (3000 - 100) * 255 = 17.6 -> 18, green 400 / 2800 * 255 = 36.4 -> 36,
    # blue 150 / 2700 * 255 = 14.2 -> 14.
    assert _thumbnail_pixel(pixels, 0, "left") == (18, 36, 14)
    assert _thumbnail_pixel(pixels, 0, "right") == (0, 0, 0)
    assert _thumbnail_pixel(pixels, 1, "right") == (255, 255, 255)
    # Each image stretched on its own gives the forest two different colours (what the figure avoided).
    assert tuple(true_colour(query.image)[5, 5]) != tuple(true_colour(match.image)[5, 5])


def test_stretch_limits_ignore_nodata_and_pool_the_images() -> None:
    ramp = np.arange(101, dtype=np.float64).reshape(1, 101)
    first = np.stack([ramp + 1, ramp + 1, ramp + 1])  # 1 .. 101
    second = np.zeros((3, 1, 40))  # nodata (0 in every band): not counted
    third = np.full((3, 1, 2), np.nan)  # not finite: not counted
    limits = figures.stretch_limits([first, None, second, third])
    np.testing.assert_allclose(limits, [[3.0, 99.0]] * 3)  # the 2nd and 98th percentiles of 1 .. 101
    assert np.isnan(figures.stretch_limits([second])).all()
    assert not true_colour(second, limits=figures.stretch_limits([second])).any()


def test_the_header_names_the_bands_and_the_stretch() -> None:
    assert figures.stretch_note(("B04", "B03", "B02")) == (
        "true colour: B04, B03, B02; one stretch for all images, 2-98 % of their pixels per band"
    )
    assert figures.stretch_note(("B08", "B04", "B03"), 1, 99).startswith("red, green, blue: B08, B04, B03;")
    query = Panel(_solid(1, 0, 0), ["query", "q", ""], "query")

    def header(**options: object) -> np.ndarray:
        pixels = np.asarray(retrieval_figure([(query, [])], "title", **options))  # type: ignore[arg-type]
        return pixels[figures.MARGIN + figures.TITLE_LINE : figures.MARGIN + figures.HEADER]

    true_colour_line = header()
    assert (true_colour_line != 255).any(), "the bands line is drawn"
    assert (true_colour_line != header(bands=("B08", "B04", "B03"))).any(), "and it names the bands"


def test_ids_are_shortened_in_the_middle() -> None:
    sample = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57"
    short = figures.shorten_middle(sample, lambda text: len(text) <= 27)
    assert len(short) == 27 and "…" in short
    start, end = short.split("…")
    assert sample.startswith(start) and sample.endswith(end)
    assert end.endswith("T33UUP_26_57") and start.startswith("S2A_MSIL2A")  # both ends stay visible
    assert figures.shorten_middle("short", lambda text: len(text) <= 27) == "short"
    # In the figure an id line is shortened in the middle, a labels line at its end.
    from PIL import ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = figures._font(11)
    width = figures.THUMB + 2 * figures.FRAME
    drawn = figures._fit_caption(draw, sample, font, width)
    assert drawn.endswith("_26_57") and drawn.startswith("S2A_") and draw.textlength(drawn, font=font) <= width
    labels = "Coniferous forest, Mixed forest, Transitional woodland/shrub"
    assert figures._fit_caption(draw, labels, font, width).startswith("Coniferous forest")
