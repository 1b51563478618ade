"""Monocular depth: encoder (frozen ViT + PEFT method + neck) -> depth head, trained with the scale-invariant log loss."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitadapter.adapters import MethodConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.callbacks import DepthPredictionWriter
from vitadapter.encoder import Encoder
from vitadapter.inference import tta_inference
from vitadapter.metrics.depth import DepthMetrics, flatten_depth_results, format_depth_table
from vitadapter.tasks.base import FrozenBackboneTask
from vitadapter.tasks.depth_losses import gradient_loss, scale_invariant_log_loss

COUNTS = ("num_images", "num_images_without_valid")


class DepthTask(FrozenBackboneTask):
    """Trains a PEFT method, neck and depth head on a frozen ViT; validates with the NYU depth metrics.

    Args:
        backbone: the frozen ViT.
        neck: builds the neck given `in_channels` and `patch_size` (a Hydra partial).
        head: builds the depth head given `in_channels`, `min_depth` and `max_depth`; it maps the pyramid
            to B×1×h×w depths in metres.
        optimizer: builds the optimiser from parameter groups.
        scheduler: builds the per-step lr schedule from the optimiser and `total_steps`.
        adapter: the PEFT method to place on the backbone (None: neck and head only, as method `none`).
        min_depth: smallest depth scored and predicted (metres).
        max_depth: largest depth trained on, scored and predicted (metres).
        eval_crop: the region scored ("eigen": NYU's crop of 480×640 maps; None: the whole map).
        loss: `sigloss_weight` (scale-invariant log loss), `mean_weight` (its weight of the squared mean log
            error, the global scale: 0.15 in DINOv2 and the Depth Toolbox), `warm_up_steps` (its first steps train
            the mean log error only, as the toolbox's warm-up), `gradient_weight` (multi-scale gradient loss, 0: off).
        inference: validation inference: mode ("whole" | "slide"), crop_size, stride and flip TTA; scales
            must stay [1.0] (a rescaled image looks nearer or farther, so its depths are not the original's).
        task_name: the name it serves under beside other tasks (`MultiTaskModel`); None: "depth".
        class_names: unused (the builder passes a datamodule's classes to every task; depth has none).
    """

    def __init__(
        self,
        backbone: ViTBackbone,
        neck: Callable[..., nn.Module],
        head: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        adapter: MethodConfig | None = None,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        eval_crop: str | None = None,
        loss: Mapping[str, Any] | None = None,
        inference: Mapping[str, Any] | None = None,
        task_name: str | None = None,
        class_names: Any = None,
    ) -> None:
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < data.min_depth < data.max_depth, got {min_depth} and {max_depth}")
        self.task_name = task_name or "depth"
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.encoder = Encoder(backbone, neck, adapter)
        self.head = head(in_channels=self.encoder.out_channels, min_depth=self.min_depth, max_depth=self.max_depth)
        self.loss_settings = {"sigloss_weight": 1.0, "mean_weight": 0.15, "warm_up_steps": 0, "gradient_weight": 0.0}
        unknown = sorted(set(loss or {}) - set(self.loss_settings))
        if unknown:
            raise ValueError(f"unknown model.loss key(s) {unknown}; allowed: {sorted(self.loss_settings)}")
        self.loss_settings.update(dict(loss or {}))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.inference = {"mode": "whole", "crop_size": 512, "stride": 341, "flip": False, "scales": [1.0]}
        self.inference.update(dict(inference or {}))
        if [float(s) for s in self.inference["scales"]] != [1.0]:
            raise ValueError(f"depth inference scales={list(self.inference['scales'])}: a rescaled image looks "
                             "nearer or farther, so its depths are not the original's; use scales [1.0] (flip is fine)")
        self.val_metrics = DepthMetrics(self.min_depth, self.max_depth, eval_crop)

    def forward(self, image: Tensor) -> Tensor:
        """Depth B×1×h×w in metres (at the head's resolution) for a normalised B×3×H×W image."""
        return self.head(self.encoder(image))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        image, depth = batch["image"], batch["depth"]
        pred = self._at_size(self(image), depth.shape[-2:])
        valid = (depth > 0) & (depth <= self.max_depth)
        settings = self.loss_settings
        warm_up = self.global_step < int(settings["warm_up_steps"])
        loss = settings["sigloss_weight"] * scale_invariant_log_loss(pred, depth, valid, settings["mean_weight"],
                                                                     warm_up=warm_up)
        self.log("train/loss_sig", loss)
        if settings["gradient_weight"]:
            grad = gradient_loss(pred, depth, valid)
            self.log("train/loss_grad", grad)
            loss = loss + settings["gradient_weight"] * grad
        self.log("train/loss", loss, prog_bar=True)
        return self.checked_loss(loss, batch, batch_idx)

    @staticmethod
    def _at_size(pred: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
        """B×1×h×w -> B×H×W float32, bilinearly upsampled to the ground truth (where the loss is computed)."""
        return F.interpolate(pred.float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]

    def predict_depth(self, image: Tensor, output_size: tuple[int, int]) -> Tensor:
        """Depth B×H×W in metres at `output_size`, with the configured inference and flip TTA, clipped to the
        depth range as the evaluation clips it."""
        cfg = self.inference
        depth = tta_inference(self, image, output_size, mode=cfg["mode"], crop_size=cfg["crop_size"],
                              stride=cfg["stride"], flip=bool(cfg["flip"]), softmax=False)
        return depth[:, 0].clamp(self.min_depth, self.max_depth)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        preds = []
        for image, depth in zip(batch["image"], batch["depth"]):
            pred = self.predict_depth(image.unsqueeze(0), tuple(depth.shape[-2:]))[0]
            self.val_metrics.update(pred, depth)
            preds.append(pred)
        return {"preds": preds, "names": list(batch["name"])}

    def on_validation_epoch_end(self) -> None:
        results = self.keep_validation_results(self.val_metrics)
        for key, value in results.items():
            if key not in COUNTS:
                self.log(f"val/{key}", value.float(), prog_bar=key == "AbsRel")

    def summary_metrics(self) -> dict[str, float]:
        """Flat val/* metrics of the last validation (AbsRel, SqRel, RMSE, RMSElog, log10, SILog, delta1-3)."""
        return flatten_depth_results(self.validation_results(), prefix="val/")

    def results_table(self) -> str:
        """The metrics of the last validation as a table."""
        return format_depth_table(self.validation_results())

    def prediction_writer(self, output_dir: str | Path, datamodule: L.LightningDataModule) -> L.Callback:
        """The callback that eval.py adds for `eval.save_predictions=true`: one uint16 PNG per image in the
        dataset's depth scale."""
        return DepthPredictionWriter(output_dir, datamodule.depth_scale)
