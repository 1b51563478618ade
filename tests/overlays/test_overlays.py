"""Prediction overlays drawn from what validation has: normalised image, ground truth, prediction."""

from __future__ import annotations

import numpy as np
import torch

from vitadapter.overlays.draw import PANEL_GAP, detection_overlay, segmentation_overlay
from vitadapter.inference.visualize import class_palette

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
NAMES = ["circle", "square", "star"]


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    return (pixels - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def _panels(picture: np.ndarray, height: int, width: int) -> list[np.ndarray]:
    return [picture[:height, i * (width + PANEL_GAP):i * (width + PANEL_GAP) + width] for i in range(3)]


def test_detection_overlay_maps_truth_and_prediction_to_the_original_pixels() -> None:
    # the datamodule's input: a 60×80 original at scale 0.5 (30×40), normalised
    image = _normalised(np.full((30, 40, 3), 90, dtype=np.uint8))
    target = {"boxes": torch.tensor([[5.0, 5, 15, 15]]), "labels": torch.tensor([0])}  # input pixels
    prediction = {"boxes": torch.tensor([[40.0, 30, 70, 50], [2, 40, 20, 58]]), "scores": torch.tensor([0.9, 0.1]),
                  "labels": torch.tensor([1, 2]), "masks": torch.zeros(2, 60, 80, dtype=torch.bool)}
    prediction["masks"][0, 35:45, 45:65] = True
    palette = class_palette(len(NAMES))

    picture = np.asarray(detection_overlay(image, target, prediction, 0.5, (60, 80), NAMES, MEAN, STD, alpha=1.0))
    assert picture.shape == (60, 3 * 80 + 2 * PANEL_GAP, 3)
    assert (picture[:, 80:80 + PANEL_GAP] == 255).all()
    photo, truth, predicted = _panels(picture, 60, 80)
    assert photo.shape == (60, 80, 3) and np.abs(photo.astype(int) - 90).max() <= 1  # the input at the original size
    assert tuple(truth[10, 20]) == palette[0]  # the ground-truth box's top edge at original y=10 (input y=5)
    assert tuple(predicted[10, 20]) != palette[0]  # ground truth only in its own panel
    assert tuple(predicted[30, 55]) == palette[1]  # the prediction's box edge, in original pixels
    assert tuple(predicted[40, 55]) == palette[1]  # its mask (alpha 1)
    assert tuple(predicted[40, 2]) != palette[2] and tuple(truth[30, 55]) != palette[1]  # score 0.1 not drawn

    small = np.asarray(detection_overlay(image, target, prediction, 0.5, (60, 80), NAMES, MEAN, STD, max_size=40))
    assert small.shape == (30, 3 * 40 + 2 * PANEL_GAP, 3)
    assert tuple(_panels(small, 30, 40)[1][5, 10]) == palette[0]  # drawn at half the original size


def test_segmentation_overlay_leaves_ignored_pixels_bare_and_lists_both_maps() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = torch.full((20, 30), 255)
    mask[:, :10] = 0
    prediction = torch.full((20, 30), 2)
    picture = np.asarray(segmentation_overlay(_normalised(rgb), mask, prediction, NAMES, MEAN, STD, alpha=1.0))
    photo, truth, predicted = _panels(picture, 20, 30)
    palette = class_palette(len(NAMES))
    assert np.abs(photo.astype(int) - rgb).max() <= 1
    assert (truth[:, :10] == palette[0]).all() and np.array_equal(truth[:, 10:], photo[:, 10:])
    assert (predicted == palette[2]).all()
    legend = picture[:, 3 * 30 + 2 * PANEL_GAP:]
    swatches = [any((legend == palette[k]).all(axis=-1).ravel()) for k in range(3)]
    assert swatches == [True, False, True]
