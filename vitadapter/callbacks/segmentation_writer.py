"""Writes validation predictions as label PNGs in the dataset's own label convention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from PIL import Image


class SegmentationPredictionWriter(L.Callback):
    """Saves one PNG per validation image, at the image's original size, named after the image.

    A pixel holds the label value the dataset itself uses on disk for the predicted class: with
    `reduce_zero_label` (ADE20K) class index + 1, so 0 stays "other", as the ADE20K benchmark expects;
    otherwise the class index (Cityscapes trainIds, Pascal VOC 0..20, folder_seg); with `label_ids`,
    `label_ids[class index]` (e.g. Cityscapes labelIds for the benchmark server).

    Args:
        output_dir: folder for the PNGs (created; images in subfolders keep them, e.g. Cityscapes cities).
        reduce_zero_label: whether the dataset's labels were shifted down by one for training.
        label_ids: optional value to write for each class index (overrides the offset).
    """

    def __init__(self, output_dir: str | Path, reduce_zero_label: bool = True,
                 label_ids: Sequence[int] | None = None) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.offset = 1 if reduce_zero_label else 0
        self.label_ids = None if label_ids is None else np.asarray(list(label_ids), dtype=np.int64)

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
            classes = pred.cpu().numpy().astype(np.int64)
            values = classes + self.offset if self.label_ids is None else self.label_ids[classes]
            if values.max(initial=0) > 255:
                raise ValueError(f"class index {values.max()} does not fit an 8-bit PNG ({name})")
            path = self.output_dir / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(values.astype(np.uint8)).save(path)
