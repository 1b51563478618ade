"""Depth pictures: known depths get the colour map's colours on the fixed scale, the colour bar runs far (top) to
near (bottom), invalid pixels are black."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps

from vitadapter.inference.visualize import (
    COLORBAR_GAP,
    COLORBAR_WIDTH,
    DEPTH_COLORMAP,
    INVALID_DEPTH_COLOR,
    PANEL_GAP,
    colorize_depth,
    draw_depth,
)


def _cmap(position: float) -> tuple[int, int, int]:
    """matplotlib's own colour of the map at `position` (0..1), as uint8 RGB."""
    r, g, b, _ = colormaps[DEPTH_COLORMAP](position)
    return round(r * 255), round(g * 255), round(b * 255)


def test_known_depths_get_the_colour_maps_colours() -> None:
    assert DEPTH_COLORMAP == "viridis"
    depth = np.array([[0.5, 2.0, 5.25, 10.0, 30.0], [0.0, -1.0, np.nan, np.inf, 0.1]])
    colours = colorize_depth(depth, 0.5, 10.0)
    assert colours.shape == (2, 5, 3) and colours.dtype == np.uint8
    assert tuple(colours[0, 0]) == _cmap(0.0) == (68, 1, 84)  # min depth: the first colour
    assert tuple(colours[0, 3]) == _cmap(1.0) == (253, 231, 37)  # max depth: the last colour
    assert tuple(colours[0, 2]) == _cmap(0.5)  # half way (index 128 of 256)
    assert tuple(colours[0, 1]) == _cmap(1.5 / 9.5)
    assert tuple(colours[0, 4]) == _cmap(1.0) and tuple(colours[1, 4]) == _cmap(0.0)  # clipped to the range
    assert all(tuple(c) == INVALID_DEPTH_COLOR for c in colours[1, :4])  # no depth: 0, negative, nan, inf
    with pytest.raises(ValueError, match="need min_depth < max_depth"):
        colorize_depth(depth, 2.0, 2.0)


def test_depth_picture_holds_image_depth_and_colour_bar() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 50, 3), dtype=np.uint8)
    depth = np.full((64, 50), 1.0)
    depth[:, 25:] = 8.0
    picture = np.asarray(draw_depth(rgb, depth, 1.0, 8.0))
    assert picture.shape[0] == 64
    assert np.array_equal(picture[:, :50], rgb)  # the input as it is
    assert (picture[:, 50:50 + PANEL_GAP] == 255).all()
    coloured = picture[:, 50 + PANEL_GAP:100 + PANEL_GAP]
    assert (coloured[:, :25] == _cmap(0.0)).all() and (coloured[:, 25:] == _cmap(1.0)).all()
    # the colour bar: a column through it runs from the last colour (far, top) to the first (near, bottom)
    bar_left = 100 + PANEL_GAP + COLORBAR_GAP
    assert (picture[:, 100 + PANEL_GAP:bar_left] == 255).all()
    column = picture[:, bar_left + COLORBAR_WIDTH // 2]
    rows = [y for y in range(64) if tuple(column[y]) != (255, 255, 255)]
    assert len(rows) > 40 and rows == list(range(rows[0], rows[-1] + 1))
    assert tuple(column[rows[0]]) == _cmap(1.0) and tuple(column[rows[-1]]) == _cmap(0.0)
    positions = np.linspace(0, 1, 256)
    nearest = [int(np.argmin([np.abs(np.array(_cmap(p)) - column[y]).sum() for p in positions])) for y in rows]
    assert nearest == sorted(nearest, reverse=True)  # monotonic along the colour map
    labels = picture[:, bar_left + COLORBAR_WIDTH + 2:]
    assert labels.shape[1] > 20 and (labels < 128).any()  # tick labels in dark text
    with pytest.raises(ValueError, match="differ in size"):
        draw_depth(rgb, depth[:10], 1.0, 8.0)
