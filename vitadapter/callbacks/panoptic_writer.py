"""Writes validation panoptic segmentations in the COCO panoptic results format (json + one PNG per image)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L

from vitadapter.data.coco_panoptic_format import PanopticResultWriter
from vitadapter.utils.ranks import gather_from_ranks

RESULTS_FILE = "panoptic_predictions.json"


class PanopticPredictionWriter(L.Callback):
    """Saves the panoptic segmentations of the last validation as `output_dir/panoptic_predictions.json` and
    `output_dir/panoptic_predictions/<ground truth's PNG name>` (panopticapi's layout: the PNG folder is the json's
    path without `.json`).

    Each rank writes the PNGs of the images it validates (every image goes to exactly one rank); rank 0 writes the
    json of every rank's segments (original `category_id`, `isthing`, `area`, `bbox`), so `evaluate_panoptic_files`
    on the two reproduces the reported PQ.

    Args:
        output_dir: folder for the json and the PNG folder (created).
        contiguous_to_category_id: model class (0..K-1) -> original category id.
        isthing: per class, whether it is a thing.
    """

    def __init__(self, output_dir: str | Path, contiguous_to_category_id: Mapping[int, int],
                 isthing: Sequence[bool]) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.contiguous_to_category_id = dict(contiguous_to_category_id)
        self.isthing = list(isthing)
        self.writer: PanopticResultWriter | None = None

    @property
    def path(self) -> Path:
        """Where the results json is written."""
        return self.output_dir / RESULTS_FILE

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.writer = PanopticResultWriter(self.path, self.contiguous_to_category_id, self.isthing)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not outputs:  # every image of the batch was skipped as bad
            return
        for prediction, image_id, file_name in zip(outputs["predictions"], batch["image_id"], batch["file_name"]):
            self.writer.add(image_id, file_name, prediction["panoptic"], prediction["segments_info"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a collective: every rank hands its annotations over, rank 0 writes them all
        annotations = [a for rank in gather_from_ranks(self.writer.annotations) for a in rank]
        if trainer.is_global_zero:
            self.writer.write(annotations)
