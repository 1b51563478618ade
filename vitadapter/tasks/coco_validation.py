"""Validation with COCO AP (pycocotools' COCOeval, box and mask AP in percent) for the tasks that predict COCO
instances: detectors (`DetectionTask`) and mask classification in instance mode (`InstanceSegmentationTask`)."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from vitadapter.callbacks.detection_writer import DetectionPredictionWriter
from vitadapter.metrics.coco import COCOEvaluator
from vitadapter.metrics.coco_summary import flatten_coco_results, format_coco_table


class COCOValidation:
    """LightningModule mixin: a `COCOEvaluator` built from the datamodule's ground truth, updated by the host's
    `validation_step` (`self.evaluator.update(image_ids, predictions)` with predictions in original pixels), gathered
    from every rank and scored at the epoch's end.

    The host defines `iou_types` ("bbox", and "segm" when it predicts masks).
    """

    iou_types: tuple[str, ...]
    evaluator: COCOEvaluator | None = None
    last_val_results: dict[str, float | None] | None = None

    def setup(self, stage: str) -> None:
        """Builds the COCO evaluator from the datamodule's ground truth and label map."""
        if stage not in ("fit", "validate"):
            return
        datamodule = self.trainer.datamodule  # type: ignore[attr-defined]
        if datamodule is None or not hasattr(datamodule, "val_annotation_file"):
            raise ValueError(f"{type(self).__name__} validates against a COCO-style datamodule (with "
                             "val_annotation_file and contiguous_to_category_id); pass datamodule=COCODataModule(...) "
                             "to the trainer")
        path = Path(datamodule.val_annotation_file)
        if self.evaluator is None or self.evaluator.annotation_file != path:
            self.evaluator = COCOEvaluator(path, datamodule.contiguous_to_category_id, self.iou_types)

    def on_validation_epoch_start(self) -> None:
        # reset here, not at the end: the prediction writer reads the results after the epoch
        self.evaluator.reset()

    def on_validation_epoch_end(self) -> None:
        self.evaluator.gather()
        self.last_val_results = self.evaluator.compute()
        for key, value in self.last_val_results.items():
            if value is not None:  # undefined (no ground truth of that size) is not logged as a number
                self.log(f"val/{key}", value, prog_bar=key == "bbox_AP")  # type: ignore[attr-defined]

    def summary_metrics(self) -> dict[str, float | None]:
        """`val/bbox_AP` ... `val/bbox_APl` (+ `val/segm_*` with masks) of the last validation; None = undefined."""
        return flatten_coco_results(self.validation_results(), self.iou_types, prefix="val/")

    def results_table(self) -> str:
        """The AP table of the last validation."""
        return format_coco_table(self.validation_results(), self.iou_types)

    def prediction_writer(self, output_dir: str | Path, datamodule: L.LightningDataModule) -> L.Callback:
        """The callback that eval.py adds for `eval.save_predictions=true`: `output_dir/predictions.json`."""
        return DetectionPredictionWriter(output_dir)
