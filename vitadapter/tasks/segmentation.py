"""Semantic segmentation: encoder (frozen ViT + PEFT method + neck) -> decode head, trained with cross-entropy (or
the head's own loss: Mask2Former's mask classification)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitadapter.adapters import MethodConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.callbacks import SegmentationPredictionWriter
from vitadapter.inference import tta_inference
from vitadapter.metrics import SegmentationMetrics, flatten_segmentation_results, format_segmentation_table
from vitadapter.tasks.base import FrozenBackboneTask


class SegmentationTask(FrozenBackboneTask):
    """Trains a PEFT method, neck and head on a frozen ViT; validates with dataset-level mIoU.

    Args:
        backbone: the frozen ViT.
        neck: builds the neck given `in_channels` and `patch_size` (a Hydra partial).
        head: builds the decode head given `in_channels` and `num_classes`. A head with a
            `segmentation_loss(pyramid, mask, ignore_index)` method trains with that loss instead of
            cross-entropy on its output, and one with `outputs_scores = True` gives class scores that inference
            averages without a softmax (Mask2Former).
        class_names: one name per class (sets the number of classes).
        optimizer: builds the optimiser from parameter groups.
        scheduler: builds the per-step lr schedule from the optimiser and `total_steps`.
        adapter: the PEFT method to place on the backbone (None: neck and head only, as method `none`).
        aux_head: optional auxiliary head (FCN on stride 16), its cross-entropy added with weight `aux_weight`
            (beside a head with its own loss too: it trains the neck per pixel).
        aux_weight: weight of the auxiliary loss.
        ignore_index: label value that is not trained on nor scored.
        inference: validation inference: mode ("whole" | "slide"), crop_size, stride, and
            test-time augmentation flip (bool) and scales (list of floats).
        task_name: the name it serves under beside other tasks (`MultiTaskModel`); None: "segmentation".
    """

    def __init__(
        self,
        backbone: ViTBackbone,
        neck: Callable[..., nn.Module],
        head: Callable[..., nn.Module],
        class_names: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        adapter: MethodConfig | None = None,
        aux_head: Callable[..., nn.Module] | None = None,
        aux_weight: float = 0.4,
        ignore_index: int = 255,
        inference: Mapping[str, Any] | None = None,
        task_name: str | None = None,
    ) -> None:
        super().__init__()
        self.task_name = task_name or "segmentation"
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.encoder = Encoder(backbone, neck, adapter)
        self.head = head(in_channels=self.encoder.out_channels, num_classes=self.num_classes)
        self.aux_head = (
            aux_head(in_channels=self.encoder.out_channels, num_classes=self.num_classes) if aux_head else None
        )
        self.aux_weight = aux_weight
        self.ignore_index = ignore_index
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.inference = {"mode": "whole", "crop_size": 512, "stride": 341, "flip": False, "scales": [1.0]}
        self.inference.update(dict(inference or {}))
        self.val_metrics = SegmentationMetrics(self.num_classes, ignore_index, self.class_names)

    @property
    def head_has_own_loss(self) -> bool:
        """Whether the head trains with its own `segmentation_loss` (Mask2Former) rather than cross-entropy."""
        return callable(getattr(self.head, "segmentation_loss", None))

    def forward(self, image: Tensor) -> Tensor:
        """Logits (or the head's class scores) at stride 4 for a normalised B×3×H×W image."""
        return self.head(self.encoder(image))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        image, mask = batch["image"], batch["mask"]
        pyramid = self.encoder(image)
        if self.head_has_own_loss:
            losses = self.head.segmentation_loss(pyramid, mask, self.ignore_index)
            for key, value in losses.items():
                if key != "loss":
                    self.log(f"train/{key}", value)
            loss = losses["loss"]
        else:
            loss = self._loss(self.head(pyramid), mask)
        self.log("train/loss_decode", loss, prog_bar=False)
        if self.aux_head is not None:
            aux_loss = self._loss(self.aux_head(pyramid), mask)
            self.log("train/loss_aux", aux_loss)
            loss = loss + self.aux_weight * aux_loss
        self.log("train/loss", loss, prog_bar=True)
        return self.checked_loss(loss, batch, batch_idx)

    def _loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Cross-entropy averaged over the labelled pixels; exactly 0 (zero gradient) when the batch has none.

        `F.cross_entropy`'s mean divides by the number of labelled pixels, 0/0 = NaN for a batch whose
        crops are all `ignore_index`; the sum over those pixels divided by max(count, 1) is the same mean
        otherwise (bit for bit) and stays connected to the graph, so every rank still runs its backward.
        """
        upsampled = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        total = F.cross_entropy(upsampled.float(), mask, ignore_index=self.ignore_index, reduction="sum")
        # + 0 x the logits: adds exactly 0 to the loss and its gradient when they are finite, but a NaN/Inf logit
        # makes the loss non-finite even where no pixel is labelled (the sum above skips those pixels, while
        # its backward would still spread NaN into the weights), so the loss guard stops the run
        return total / (mask != self.ignore_index).sum().clamp_min(1) + 0.0 * logits.sum(dtype=torch.float32)

    def predict_probabilities(self, image: Tensor, output_size: tuple[int, int]) -> Tensor:
        """Class probabilities B×K×H×W at `output_size` with the configured inference and TTA (a head with
        `outputs_scores`: its class scores, averaged as they are)."""
        cfg = self.inference
        return tta_inference(
            self,
            image,
            output_size,
            mode=cfg["mode"],
            crop_size=cfg["crop_size"],
            stride=cfg["stride"],
            scales=tuple(cfg["scales"]),
            flip=bool(cfg["flip"]),
            softmax=not getattr(self.head, "outputs_scores", False),
        )

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        preds = []
        for image, mask, name in zip(batch["image"], batch["mask"], batch["name"]):
            probs = self.predict_probabilities(image.unsqueeze(0), tuple(mask.shape[-2:]))
            pred = probs.argmax(dim=1)[0]
            self.val_metrics.update(pred, mask, [name])
            preds.append(pred)
        return {"preds": preds, "names": list(batch["name"])}

    def on_validation_epoch_end(self) -> None:
        results = self.keep_validation_results(self.val_metrics)
        for key in ("mIoU", "aAcc", "mAcc"):
            self.log(f"val/{key}", results[key].float(), prog_bar=key == "mIoU")

    def summary_metrics(self) -> dict[str, float]:
        """Flat val/* metrics of the last validation (mIoU, aAcc, mAcc, per-class IoU and Acc)."""
        return flatten_segmentation_results(self.validation_results(), self.class_names, prefix="val/")

    def results_table(self) -> str:
        """The per-class table of the last validation, as mmseg prints it."""
        return format_segmentation_table(self.validation_results(), self.class_names)

    def prediction_writer(self, output_dir: str | Path, datamodule: L.LightningDataModule) -> L.Callback:
        """The callback that eval.py adds for `eval.save_predictions=true`: one label PNG per image."""
        return SegmentationPredictionWriter(output_dir, datamodule.reduce_zero_label,
                                            getattr(datamodule, "label_ids", None))
