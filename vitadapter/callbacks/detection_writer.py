"""Writes validation detections as a COCO results file (predictions.json)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

RESULTS_FILE = "predictions.json"


class DetectionPredictionWriter(L.Callback):
    """Saves the detections of the last validation as `output_dir/predictions.json` (rank 0).

    The file holds what the task's `COCOEvaluator` scored, after gathering all ranks: original
    `image_id` and `category_id`, `bbox` as [x, y, w, h] in original pixels, `score` and, for
    instance segmentation, `segmentation` as compressed RLE; so COCOeval on it (e.g.
    `vitadapter.metrics.evaluate_results_file`) reproduces the reported numbers.

    Args:
        output_dir: folder for the file (created).
    """

    def __init__(self, output_dir: str | Path) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)

    @property
    def path(self) -> Path:
        """Where the results file is written."""
        return self.output_dir / RESULTS_FILE

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the module's on_validation_epoch_end, which gathered and scored the detections
        if not trainer.is_global_zero:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(pl_module.evaluator.results()))
