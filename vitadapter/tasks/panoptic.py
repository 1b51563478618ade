"""Panoptic segmentation: encoder (frozen ViT + PEFT method + neck) -> Mask2Former, validated with PQ.

Cheng et al., "Masked-attention Mask Transformer for Universal Image Segmentation", CVPR 2022: one query per thing
or stuff segment, trained on every segment of a crop (crowd regions, void and padding left out of the loss);
inference keeps the confident queries and gives each pixel to one of them (`panoptic_predictions`), at the
original image's size. Scores are panopticapi's PQ, SQ and RQ (`PanopticMetrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from vitadapter.adapters import MethodConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.callbacks.panoptic_writer import PanopticPredictionWriter
from vitadapter.heads.mask2former import MaskTargets, panoptic_predictions
from vitadapter.metrics.panoptic import PanopticMetrics, flatten_panoptic_results, format_panoptic_table
from vitadapter.tasks.mask_classification import MaskClassificationTask


def panoptic_targets(masks: Tensor, labels: Tensor, iscrowd: Tensor) -> MaskTargets:
    """What one training crop teaches: every segment but the crowd regions, on the pixels of those segments only
    (crowd regions, void and the padding are unlabelled, so a crop of nothing else trains nothing)."""
    kept = masks[~iscrowd.bool()]
    return MaskTargets(labels[~iscrowd.bool()], kept, kept.any(0))


class PanopticTask(MaskClassificationTask):
    """Trains a PEFT method, neck and Mask2Former head on a frozen ViT; validates with panoptic quality.

    Args:
        backbone: the frozen ViT.
        neck: builds the neck given `in_channels` and `patch_size` (a Hydra partial); strides 4..32.
        head: builds the mask-classification head given `in_channels` and `num_classes` (model/head=mask2former).
        class_names: one name per class (things and stuff), in contiguous-label order.
        isthing: per class, whether it is a thing (the datamodule's `isthing` when the config leaves it null).
        optimizer: builds the optimiser from parameter groups.
        scheduler: builds the per-step lr schedule from the optimiser and `total_steps`.
        adapter: the PEFT method to place on the backbone (None: neck and head only).
        object_mask_threshold: class probability a query must exceed to become a segment (Mask2Former: 0.8).
        overlap_threshold: share of its mask a query must keep after each pixel went to the most confident query
            (Mask2Former: 0.8).
        task_name: the name it serves under beside other tasks (`MultiTaskModel`); None: "panoptic".
    """

    def __init__(
        self,
        backbone: ViTBackbone,
        neck: Callable[..., nn.Module],
        head: Callable[..., nn.Module],
        class_names: Sequence[str],
        isthing: Sequence[bool],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        adapter: MethodConfig | None = None,
        object_mask_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        task_name: str | None = None,
    ) -> None:
        super().__init__(backbone, neck, head, class_names, optimizer, scheduler, adapter, task_name or "panoptic")
        if isthing is None or len(isthing) != self.num_classes:
            raise ValueError(f"model.isthing must say for each of the {self.num_classes} classes whether it is a thing "
                             f"(leave it null to take the datamodule's), got {isthing}")
        self.isthing = [bool(t) for t in isthing]
        self.thing_classes = [k for k, thing in enumerate(self.isthing) if thing]
        self.inference = {"object_mask_threshold": object_mask_threshold, "overlap_threshold": overlap_threshold}
        self.val_metrics = PanopticMetrics(self.isthing, self.class_names)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        targets = [panoptic_targets(m, c, z) for m, c, z in zip(batch["masks"], batch["labels"], batch["iscrowd"])]
        return self.mask_classification_loss(torch.stack(batch["image"]), targets, batch, batch_idx)

    def predict(self, images: Sequence[Tensor], scales: Sequence[float],
                orig_sizes: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
        """Panoptic segmentations at the original images' size; call in eval mode.

        Args:
            images: the datamodule's resized, normalised images (3×h×w each; each runs alone).
            scales: per image, the datamodule's rescale factor.
            orig_sizes: per image, the original (height, width).

        Returns:
            Per image `panoptic` (H×W int64 segment ids, 0 void) and `segments_info` (`id`, `category_id` as a
            class index, `isthing`, `score`), as `panoptic_predictions` gives them.
        """
        def combine(class_logits: Tensor, mask_logits: Tensor) -> dict[str, Any]:
            ids, segments = panoptic_predictions(class_logits, mask_logits, self.thing_classes, **self.inference)
            return {"panoptic": ids, "segments_info": segments}

        return self.predict_each(images, scales, orig_sizes, combine)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any] | None:
        if not batch:  # every image of the batch was skipped as bad (data.skip_bad_samples)
            return None
        predictions = self.predict(batch["image"], batch["scale"], batch["orig_size"])
        for prediction, truth, segments, name in zip(predictions, batch["panoptic"], batch["segments_info"],
                                                     batch["name"]):
            self.val_metrics.update(prediction["panoptic"], prediction["segments_info"], truth, segments, name)
        # for callbacks (the prediction writer, overlays): one segmentation per image at its original size
        return {"predictions": predictions}

    def on_validation_epoch_end(self) -> None:
        results = self.keep_validation_results(self.val_metrics)
        for key in ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"):
            self.log(f"val/{key}", results[key].float(), prog_bar=key == "PQ")

    def summary_metrics(self) -> dict[str, float]:
        """Flat val/* metrics of the last validation: PQ, SQ, RQ (all, _th things, _st stuff) and per class."""
        return flatten_panoptic_results(self.validation_results(), self.class_names, prefix="val/")

    def results_table(self) -> str:
        """The per-class PQ/SQ/RQ table and the All/Things/Stuff summary of the last validation."""
        return format_panoptic_table(self.validation_results(), self.class_names, self.isthing)

    def prediction_writer(self, output_dir: str | Path, datamodule: L.LightningDataModule) -> L.Callback:
        """The callback that eval.py adds for `eval.save_predictions=true`: the COCO panoptic results format
        (`output_dir/panoptic_predictions.json` and one PNG per image in `output_dir/panoptic_predictions/`)."""
        return PanopticPredictionWriter(output_dir, datamodule.contiguous_to_category_id, self.isthing)
