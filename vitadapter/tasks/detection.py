"""Object detection / instance segmentation: encoder (frozen ViT + PEFT method + neck) -> FPN -> torchvision detector.

Validation scores the detections with pycocotools' COCOeval (box and mask AP, in percent) after
mapping them back to the original images, so the numbers are those of the COCO benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image

from vitadapter.adapters import MethodConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.detection.backbone import DetectionBackbone
from vitadapter.detection.detectors import Detector
from vitadapter.metrics.coco import MASK_THRESHOLD
from vitadapter.tasks.base import FrozenBackboneTask
from vitadapter.tasks.coco_validation import COCOValidation


def detections_to_original(
    detection: Mapping[str, Tensor], scale: float, orig_size: Sequence[int]
) -> dict[str, Tensor]:
    """Maps one image's detections from the model's input pixels back to the original image.

    The datamodule rescaled the original by exactly `scale` (input = original × scale), so boxes are
    divided by it and clipped to the original image; mask probabilities are resized bilinearly to the
    original size and thresholded as COCOeval's convention (> 0.5).

    Args:
        detection: `boxes` (N×4 xyxy), `scores`, `labels` and optionally `masks` (N×1×h×w probabilities).
        scale: the datamodule's rescale factor for this image.
        orig_size: (height, width) of the original image.

    Returns:
        `boxes` (float32, original pixels), `scores`, `labels` and, with masks, `masks` (N×H×W bool).
    """
    height, width = int(orig_size[0]), int(orig_size[1])
    out = {
        "boxes": clip_boxes_to_image(detection["boxes"].float() / scale, (height, width)),
        "scores": detection["scores"].float(),
        "labels": detection["labels"],
    }
    if "masks" in detection:
        masks = detection["masks"].float()
        if len(masks):
            masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
        else:
            masks = masks.new_zeros((0, 1, height, width))
        out["masks"] = masks[:, 0] > MASK_THRESHOLD
    return out


class DetectionTask(COCOValidation, FrozenBackboneTask):
    """Trains a PEFT method, neck, FPN and detector heads on a frozen ViT; validates with COCO AP.

    Args:
        backbone: the frozen ViT.
        neck: builds the neck given `in_channels` and `patch_size` (a Hydra partial); strides 4..32.
        detector: builds the `Detector` given `backbone` (a `DetectionBackbone`) and `num_classes`
            (a partial of one of `vitadapter.detection.detectors`' builders).
        class_names: one name per class, in contiguous-label order (sets the number of classes).
        optimizer: builds the optimiser from parameter groups.
        scheduler: builds the per-step lr schedule from the optimiser and `total_steps`.
        adapter: the PEFT method to place on the backbone (None: neck, FPN and heads only).
        fpn_channels: channels of the FPN levels p2-p6.
        task_name: the name it serves under beside other tasks (`MultiTaskModel`); None: "detection".
    """

    def __init__(
        self,
        backbone: ViTBackbone,
        neck: Callable[..., nn.Module],
        detector: Callable[..., Detector],
        class_names: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        adapter: MethodConfig | None = None,
        fpn_channels: int = 256,
        task_name: str | None = None,
    ) -> None:
        super().__init__()
        self.task_name = task_name or "detection"
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        pyramid = DetectionBackbone(Encoder(backbone, neck, adapter), fpn_channels)
        self.detector = detector(backbone=pyramid, num_classes=self.num_classes)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    @property
    def encoder(self) -> Encoder:
        """The encoder inside the detector's backbone."""
        return self.detector.backbone.encoder

    @property
    def iou_types(self) -> tuple[str, ...]:
        """What validation scores: boxes, and masks when the detector predicts them."""
        return ("bbox", "segm") if self.detector.predicts_masks else ("bbox",)

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections (eval mode) in the input images' pixels, labels 0..K-1."""
        return self.detector(images)

    def predict(
        self, images: list[Tensor], scales: Sequence[float], orig_sizes: Sequence[Sequence[int]]
    ) -> list[dict[str, Tensor]]:
        """Detections in original image pixels (see `detections_to_original`); call in eval mode.

        Args:
            images: the datamodule's resized, normalised images.
            scales: per image, the datamodule's rescale factor.
            orig_sizes: per image, the original (height, width).

        Returns:
            Per image `boxes`, `scores`, `labels` (0..K-1) and, for instance segmentation, `masks`.
        """
        if self.detector.training:
            raise RuntimeError("DetectionTask.predict needs eval mode; call .eval() first")
        return [detections_to_original(d, s, o) for d, s, o in zip(self(images), scales, orig_sizes)]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        losses = self.detector(batch["images"], batch["targets"])
        loss = torch.stack(list(losses.values())).sum()
        batch_size = len(batch["images"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        return self.checked_loss(loss, batch, batch_idx)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any] | None:
        if not batch["images"]:  # every image of the batch was skipped as bad (data.skip_bad_samples)
            return
        predictions = self.predict(batch["images"], batch["scales"], batch["orig_sizes"])
        self.evaluator.update(batch["image_ids"], predictions)
        # for callbacks (prediction overlays): the detections in original pixels, one dict per image
        return {"predictions": predictions}
