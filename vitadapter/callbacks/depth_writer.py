"""Writes validation depth predictions as 16-bit PNGs in the dataset's own depth scale."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from PIL import Image

UINT16_MAX = 65535


def depth_to_uint16(depth: np.ndarray, depth_scale: float) -> np.ndarray:
    """Metres -> the dataset's 16-bit PNG values (metres x `depth_scale`, rounded).

    Values are clipped to 1..65535: 0 means "invalid" in these files, and a prediction is always a depth.
    """
    values = np.rint(np.asarray(depth, dtype=np.float64) * depth_scale)
    return np.clip(values, 1, UINT16_MAX).astype(np.uint16)


class DepthPredictionWriter(L.Callback):
    """Saves one uint16 PNG per validation image, at the image's original size, named after the image.

    A pixel holds the predicted depth in the dataset's scale (NYU: millimetres, `depth_scale` 1000), so
    the files read back exactly like the dataset's own ground truth.

    Args:
        output_dir: folder for the PNGs (created; images in subfolders keep them).
        depth_scale: stored value per metre.
    """

    def __init__(self, output_dir: str | Path, depth_scale: float) -> None:
        super().__init__()
        if UINT16_MAX / depth_scale < 1:
            raise ValueError(f"data.depth_scale={depth_scale} leaves no room for a metre in a 16-bit PNG")
        self.output_dir = Path(output_dir)
        self.depth_scale = float(depth_scale)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Mapping[str, Any],
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for pred, name in zip(outputs["preds"], outputs["names"]):
            path = self.output_dir / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(depth_to_uint16(pred.float().cpu().numpy(), self.depth_scale)).save(path)
