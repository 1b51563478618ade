"""Instance segmentation with a mask-classification head: encoder (frozen ViT + PEFT method + neck) -> Mask2Former,
trained on COCO instances and validated with COCO box and mask AP.

Cheng et al., CVPR 2022: one query per object; inference keeps the top 100 (query, class) pairs of an image scored
by class probability × mean mask probability (`instance_predictions`), with masks at the original image's size and
boxes around them. Predictions have `DetectionTask.predict`'s format, so COCO evaluation, the results file, the
overlays and predict.py's drawings are the detectors'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vitadapter.adapters import MethodConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.heads.mask2former import MaskTargets, instance_predictions
from vitadapter.tasks.coco_validation import COCOValidation
from vitadapter.tasks.mask_classification import MaskClassificationTask


def content_size(orig_size: Sequence[int], scale: float, image_size: int) -> tuple[int, int]:
    """The image's rows and columns in a training crop: the rescaled original (`ScaleLongestSide` rounds its size),
    cropped to at most `image_size`; the rest of the `image_size`² input is padding (bottom/right)."""
    return tuple(min(max(int(round(side * scale)), 1), image_size) for side in orig_size)  # type: ignore[return-value]


def instance_targets(target: Mapping[str, Tensor], orig_size: Sequence[int], scale: float,
                     image_size: int) -> MaskTargets:
    """What one COCO training crop teaches: its instances' masks and classes, on the image's pixels only (the
    padding is unlabelled; everything else in the image is background of every mask)."""
    if target.get("masks") is None:
        raise ValueError("instance segmentation trains on instance masks: the training targets hold none (the COCO "
                         "datamodule decodes them for training; check that the annotation file has segmentations)")
    masks = target["masks"].bool()
    valid = masks.new_zeros(masks.shape[-2:])
    height, width = content_size(orig_size, scale, image_size)
    valid[:height, :width] = True
    return MaskTargets(target["labels"], masks, valid)


class InstanceSegmentationTask(COCOValidation, MaskClassificationTask):
    """Trains a PEFT method, neck and Mask2Former head on a frozen ViT for instances; validates with COCO AP.

    Args:
        backbone: the frozen ViT.
        neck: builds the neck given `in_channels` and `patch_size` (a Hydra partial); strides 4..32.
        head: builds the mask-classification head given `in_channels` and `num_classes` (model/head=mask2former).
        class_names: one name per class, in contiguous-label order.
        optimizer: builds the optimiser from parameter groups.
        scheduler: builds the per-step lr schedule from the optimiser and `total_steps`.
        adapter: the PEFT method to place on the backbone (None: neck and head only).
        top_k: instances kept per image (Mask2Former: 100, COCO's maxDets).
        task_name: the name it serves under beside other tasks (`MultiTaskModel`); None: "instance_segmentation".
    """

    iou_types = ("bbox", "segm")

    def __init__(
        self,
        backbone: ViTBackbone,
        neck: Callable[..., nn.Module],
        head: Callable[..., nn.Module],
        class_names: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        adapter: MethodConfig | None = None,
        top_k: int = 100,
        task_name: str | None = None,
    ) -> None:
        super().__init__(backbone, neck, head, class_names, optimizer, scheduler, adapter,
                         task_name or "instance_segmentation")
        if top_k < 1:
            raise ValueError(f"model.top_k must be a positive number of instances per image, got {top_k}")
        self.top_k = int(top_k)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        images = torch.stack(batch["images"])
        targets = [instance_targets(t, o, s, images.shape[-1])
                   for t, o, s in zip(batch["targets"], batch["orig_sizes"], batch["scales"])]
        return self.mask_classification_loss(images, targets, batch, batch_idx)

    def predict(self, images: Sequence[Tensor], scales: Sequence[float],
                orig_sizes: Sequence[Sequence[int]]) -> list[dict[str, Tensor]]:
        """Instances in original image pixels, as `DetectionTask.predict` gives detections; call in eval mode.

        Args:
            images: the datamodule's resized, normalised images (3×h×w each; each runs alone).
            scales: per image, the datamodule's rescale factor.
            orig_sizes: per image, the original (height, width).

        Returns:
            Per image `boxes` (N×4 xyxy around the masks), `scores`, `labels` (0..K-1) and `masks` (N×H×W bool).
        """
        return self.predict_each(images, scales, orig_sizes, lambda classes, masks: instance_predictions(
            classes, masks, self.top_k))

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any] | None:
        if not batch["images"]:  # every image of the batch was skipped as bad (data.skip_bad_samples)
            return None
        predictions = self.predict(batch["images"], batch["scales"], batch["orig_sizes"])
        self.evaluator.update(batch["image_ids"], predictions)
        # for callbacks (prediction overlays): the instances in original pixels, one dict per image
        return {"predictions": predictions}
