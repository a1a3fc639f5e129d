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
    # Hand-computed layout: cells of 128 + 2 * 5 = 138 px, 10 px gaps, 12 px more after the query,
    # 14 px margins; rows of 138 + 4 + 3 * 13 = 181 px, 14 px apart, a 26 px header and 24 px legend.
    assert picture.size == (14 + 6 * 138 + 5 * 10 + 12 + 14, 14 + 26 + 2 * 181 + 14 + 24 + 14)
    assert picture.size == figures.figure_size(2, 5)
    pixels = np.asarray(picture)
    top = 14 + 26
    assert tuple(pixels[top + 1, 14 + 1]) == figures.COLOURS["query"]
    first_match = 14 + 138 + 10 + 12
    for i, key in enumerate(["same", "some", "none", "unknown", "unknown"]):
        x = first_match + i * (138 + 10)
        assert tuple(pixels[top + 1, x + 1]) == figures.COLOURS[key], key
    # The query thumbnail: red on the left, black on the right (stretched per band).
    assert tuple(pixels[top + 5 + 64, 14 + 5 + 20]) == (255, 0, 0)
    assert tuple(pixels[top + 5 + 64, 14 + 5 + 110]) == (0, 0, 0)
    # Match 3 has no image: a light grey placeholder.
    x = first_match + 2 * 148
    assert tuple(pixels[top + 5 + 10, x + 5 + 120]) == (225, 225, 225)
    # The second row has two matches; the rest of it stays white.
    second = top + 181 + 14
    assert tuple(pixels[second + 1, first_match + 1]) == figures.COLOURS["same"]
    assert tuple(pixels[second + 1, first_match + 2 * 148 + 1]) == (255, 255, 255)
    decoded = Image.open(io.BytesIO(figures.png_bytes(picture)))
    assert decoded.format == "PNG" and decoded.size == picture.size and decoded.mode == "RGB"
