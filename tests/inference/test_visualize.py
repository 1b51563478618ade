"""Drawing detections and segmentation class maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitadapter.inference.visualize import class_palette, draw_detections, draw_segmentation


def test_palette_is_distinct_and_stable() -> None:
    colors = class_palette(150)
    assert len(set(colors)) == 150 and colors == class_palette(150)


def test_draw_detections_respects_the_score_threshold() -> None:
    image = np.full((60, 80, 3), 128, dtype=np.uint8)
    masks = torch.zeros(2, 60, 80, dtype=torch.bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 35:55, 40:70] = True
    prediction = {"boxes": torch.tensor([[10.0, 10, 30, 30], [40, 35, 70, 55]]), "scores": torch.tensor([0.9, 0.2]),
                  "labels": torch.tensor([0, 1]), "masks": masks}
    drawn = draw_detections(image, prediction, ["circle", "square"], score_threshold=0.5)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert (drawn[20, 20] != 128).any()  # the kept detection's mask
    assert (drawn[45, 55] == 128).all()  # the low-scoring one is not drawn
    nothing = {k: v[:0] for k, v in prediction.items()}
    assert np.array_equal(draw_detections(image, nothing, ["circle", "square"]), image)


def test_draw_segmentation_blends_and_lists_present_classes() -> None:
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    class_map = np.zeros((40, 50), dtype=np.int64)
    class_map[:, 25:] = 2
    drawn = np.asarray(draw_segmentation(image, class_map, ["sky", "tree", "road"], alpha=1.0))
    palette = class_palette(3)
    assert tuple(drawn[5, 5]) == palette[0] and tuple(drawn[5, 40]) == palette[2]
    assert drawn.shape[0] >= 40 and drawn.shape[1] > 50
    legend = drawn[:, 50:]
    assert any((legend == palette[2]).all(axis=-1).ravel()) and not any((legend == palette[1]).all(axis=-1).ravel())


def test_draw_segmentation_uses_the_datasets_palette() -> None:
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    class_map = np.zeros((40, 50), dtype=np.int64)
    class_map[:, 25:] = 1
    palette = [(0, 0, 0), (255, 0, 0)]
    drawn = np.asarray(draw_segmentation(image, class_map, ["background", "crack"], alpha=1.0, palette=palette))
    assert tuple(drawn[5, 5]) == (0, 0, 0) and tuple(drawn[5, 40]) == (255, 0, 0)
    assert any((drawn[:, 50:] == (255, 0, 0)).all(axis=-1).ravel())
    with pytest.raises(ValueError, match="the palette has 2 colours for 3 classes"):
        draw_segmentation(image, class_map, ["a", "b", "c"], palette=palette)
