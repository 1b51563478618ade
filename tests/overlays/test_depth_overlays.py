"""Depth overlays: image | ground truth | prediction on one colour scale with a colour bar; invalid truth black."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from vitadapter.inference.visualize import COLORBAR_GAP, COLORBAR_WIDTH, DEPTH_COLORMAP, INVALID_DEPTH_COLOR
from vitadapter.overlays import PredictionOverlays
from vitadapter.overlays.draw import PANEL_GAP, depth_overlay

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _cmap(position: float) -> tuple[int, int, int]:
    r, g, b, _ = colormaps[DEPTH_COLORMAP](position)
    return round(r * 255), round(g * 255), round(b * 255)


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    return (pixels - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def _panels(picture: np.ndarray, height: int, width: int) -> list[np.ndarray]:
    return [picture[:height, i * (width + PANEL_GAP):i * (width + PANEL_GAP) + width] for i in range(3)]


def test_depth_overlay_panels_share_one_scale_and_show_invalid_truth_black() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    truth = torch.full((40, 60), 3.0)
    truth[:, :20] = 0.0  # no depth measured
    truth[:, 40:] = 10.0
    prediction = torch.full((40, 60), 3.0)
    prediction[:, :30] = 0.5
    picture = np.asarray(depth_overlay(_normalised(rgb), truth, prediction, 0.5, 10.0, MEAN, STD))
    assert picture.shape[0] == 40 and picture.shape[1] > 3 * 60 + 2 * PANEL_GAP + COLORBAR_GAP + COLORBAR_WIDTH
    photo, drawn_truth, drawn_prediction = _panels(picture, 40, 60)
    assert np.abs(photo.astype(int) - rgb).max() <= 1
    assert (drawn_truth[:, :20] == INVALID_DEPTH_COLOR).all()
    assert (drawn_truth[:, 40:] == _cmap(1.0)).all()
    # 3 m has one colour in both panels; 0.5 m (the task's min depth) the colour map's first
    three = drawn_truth[0, 30]
    assert tuple(three) == _cmap(2.5 / 9.5) and (drawn_prediction[:, 30:] == three).all()
    assert (drawn_prediction[:, :29] == _cmap(0.0)).all()
    bar = picture[:, 3 * 60 + 2 * PANEL_GAP + COLORBAR_GAP + COLORBAR_WIDTH // 2]
    coloured = [tuple(c) for c in bar if tuple(c) != (255, 255, 255)]
    assert coloured[0] == _cmap(1.0) and coloured[-1] == _cmap(0.0)


def test_large_depth_overlays_are_drawn_scaled_down() -> None:
    rgb = np.zeros((100, 200, 3), dtype=np.uint8)
    truth = torch.full((100, 200), 2.0)
    truth[:50] = 0.0
    picture = np.asarray(depth_overlay(_normalised(rgb[::2, ::2].copy()), truth, torch.full((100, 200), 2.0), 1.0,
                                       3.0, MEAN, STD, max_size=100))
    assert picture.shape[0] == 50
    photo, drawn_truth, drawn_prediction = _panels(picture, 50, 100)
    assert (drawn_truth[:25] == INVALID_DEPTH_COLOR).all() and (drawn_truth[25:] == _cmap(0.5)).all()
    assert (drawn_prediction == _cmap(0.5)).all()


def test_callback_draws_depth_batches_to_step_folders(tmp_path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    batch = {"image": [_normalised(rgb)] * 2, "depth": [torch.full((24, 32), 2.0)] * 2, "name": ["a", "b"]}
    outputs = {"preds": [torch.full((24, 32), 4.0)] * 2, "names": ["a", "b"]}
    trainer = SimpleNamespace(is_global_zero=True, sanity_checking=False, global_step=7, loggers=[],
                              datamodule=SimpleNamespace(mean=MEAN, std=STD))
    task = SimpleNamespace(min_depth=1.0, max_depth=5.0)
    callback = PredictionOverlays(tmp_path, num_images=1)
    callback.on_validation_epoch_start(trainer, task)
    callback.on_validation_batch_end(trainer, task, outputs, batch, 0)
    callback.on_validation_epoch_end(trainer, task)
    assert [p.name for p in (tmp_path / "step_7").iterdir()] == ["a.png"]
    expected = depth_overlay(batch["image"][0], batch["depth"][0], outputs["preds"][0], 1.0, 5.0, MEAN, STD)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "step_7" / "a.png")), np.asarray(expected))
