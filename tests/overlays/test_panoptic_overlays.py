"""Panoptic pictures: class colours, thing outlines, void left as the image, the legend's classes and names."""

from __future__ import annotations

import numpy as np
import torch

from vitadapter.inference.visualize import PANOPTIC_OUTLINE, blend_panoptic, class_palette, draw_panoptic
from vitadapter.overlays.draw import PANEL_GAP, panoptic_overlay

NAMES = ["cat", "dog", "grass", "sky"]
ISTHING = [True, True, False, False]
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _scene() -> tuple[np.ndarray, np.ndarray, list[dict[str, int]]]:
    """A 20×30 image: grass on the bottom half, two touching cats (cols 2-9 and 10-17) on top, void elsewhere."""
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ids = np.zeros((20, 30), dtype=np.int64)
    ids[10:] = 70_000
    ids[2:8, 2:10] = 5
    ids[2:8, 10:18] = 6
    segments = [{"id": 70_000, "category_id": 2}, {"id": 5, "category_id": 0}, {"id": 6, "category_id": 0}]
    return image, ids, segments


def test_things_are_outlined_stuff_is_not_and_void_stays_the_image() -> None:
    image, ids, segments = _scene()
    drawn = blend_panoptic(image, ids, segments, ISTHING, alpha=1.0)
    palette = class_palette(len(NAMES))
    assert tuple(drawn[4, 5]) == palette[0] and tuple(drawn[4, 13]) == palette[0]  # interiors: the class colour
    for y, x in ((2, 5), (7, 5), (4, 2), (4, 9), (4, 10), (4, 17)):  # edges, and both sides of the touching line
        assert tuple(drawn[y, x]) == PANOPTIC_OUTLINE != palette[0]
    assert tuple(drawn[10, 5]) == palette[2] and tuple(drawn[19, 0]) == palette[2]  # stuff: no outline
    void = ids == 0
    assert np.array_equal(drawn[void], image[void])
    half = blend_panoptic(image, ids, segments, ISTHING, alpha=0.5)
    expected = 0.5 * image[15, 3].astype(np.float32) + 0.5 * np.array(palette[2]) + 0.5
    assert np.array_equal(half[15, 3], np.clip(expected, 0, 255).astype(np.uint8))


def test_legend_lists_the_classes_present_by_name() -> None:
    image, ids, segments = _scene()
    picture = np.asarray(draw_panoptic(image, ids, segments, NAMES, ISTHING, alpha=1.0))
    legend = picture[:, 30:]
    palette = class_palette(len(NAMES))
    swatches = [bool((legend == palette[k]).all(axis=-1).any()) for k in range(len(NAMES))]
    assert swatches == [True, False, True, False]
    renamed_present = np.asarray(draw_panoptic(image, ids, segments, ["lion", *NAMES[1:]], ISTHING, alpha=1.0))
    renamed_absent = np.asarray(draw_panoptic(image, ids, segments, [*NAMES[:3], "cloud"], ISTHING, alpha=1.0))
    assert np.array_equal(renamed_absent, picture)  # an absent class's name is not drawn
    assert not np.array_equal(renamed_present[:, 30:], legend)  # a present class's name is
    assert np.array_equal(renamed_present[:20, :30], picture[:20, :30])


def test_overlay_panels_at_the_original_size_and_scaled_down() -> None:
    image, ids, segments = _scene()
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    normalised = (pixels - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    small = normalised[:, ::2, ::2]  # the datamodule's input at half the original size
    prediction = torch.zeros(20, 30, dtype=torch.int64)
    prediction[:, 15:] = 9
    predicted = [{"id": 9, "category_id": 3}]
    picture = np.asarray(panoptic_overlay(small, torch.from_numpy(ids), segments, prediction, predicted, NAMES,
                                          ISTHING, MEAN, STD, alpha=1.0))
    palette = class_palette(len(NAMES))
    truth = picture[:20, 30 + PANEL_GAP:60 + PANEL_GAP]
    pred = picture[:20, 60 + 2 * PANEL_GAP:90 + 2 * PANEL_GAP]
    assert tuple(truth[4, 5]) == palette[0] and tuple(truth[4, 9]) == PANOPTIC_OUTLINE
    assert (pred[:, 15:] == palette[3]).all() and not (pred[:, :15] == palette[3]).all(axis=-1).any()
    legend = picture[:, 90 + 2 * PANEL_GAP:]
    assert [bool((legend == palette[k]).all(axis=-1).any()) for k in range(4)] == [True, False, True, True]
    scaled = np.asarray(panoptic_overlay(small, torch.from_numpy(ids), segments, prediction, predicted, NAMES,
                                         ISTHING, MEAN, STD, alpha=1.0, max_size=15))
    assert tuple(scaled[5, 15 + PANEL_GAP + 5]) == palette[2]  # grass at half size: row 5 of 10
