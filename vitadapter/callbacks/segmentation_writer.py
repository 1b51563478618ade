"""Writes validation predictions as label PNGs in the ADE20K submission convention."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from PIL import Image


class SegmentationPredictionWriter(L.Callback):
    """Saves one PNG per validation image, at the image's original size, named after the image.

    With `reduce_zero_label` (ADE20K) a pixel holds class index + 1, so 0 stays "other", as the
    ADE20K benchmark expects; otherwise it holds the class index.

    Args:
        output_dir: folder for the PNGs (created).
        reduce_zero_label: whether the dataset's labels were shifted down by one for training.
    """

    def __init__(self, output_dir: str | Path, reduce_zero_label: bool = True) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.offset = 1 if reduce_zero_label else 0

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Mapping[str, Any],
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for pred, name in zip(outputs["preds"], outputs["names"]):
            values = pred.cpu().numpy().astype(np.int64) + self.offset
            if values.max(initial=0) > 255:
                raise ValueError(f"class index {values.max()} does not fit an 8-bit PNG ({name})")
            Image.fromarray(values.astype(np.uint8)).save(self.output_dir / f"{name}.png")
