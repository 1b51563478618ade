"""What the mask-classification tasks share (panoptic and instance segmentation with the Mask2Former head): encoder
(frozen ViT + PEFT method + neck) -> a head that predicts a class and a mask per query, trained with the head's own
loss on per-image `MaskTargets`, its queries mapped back to the original image for inference."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from vitadapter.adapters import MethodConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.heads.mask2former import MaskTargets, QueryPredictions
from vitadapter.tasks.base import FrozenBackboneTask

MASK_STRIDE = 4
"""Input pixels per cell of the predicted masks (the pyramid's finest level, s4)."""


def masks_to_original(mask_logits: Tensor, scale: float, orig_size: Sequence[int]) -> Tensor:
    """Mask logits at stride 4 of the model's input, resampled (bilinear) onto the original image's pixels.

    The input was the original rescaled by exactly `scale` (and padded bottom/right, by the datamodule or to whole
    ViT patches), so the original image covers the top-left `orig_size × scale / 4` cells of the masks, a
    fractional extent. torchvision's `roi_align` (one sample per output pixel, at its centre) resamples exactly
    that region to the original size in one step, as `F.interpolate(align_corners=False)` would resize the
    region alone, without first upsampling every query's mask to the padded input.

    Args:
        mask_logits: Q×h×w mask logits at stride 4.
        scale: the datamodule's rescale factor (input = original × scale).
        orig_size: (height, width) of the original image.

    Returns:
        Q×H×W float32 mask logits in original pixels.
    """
    height, width = int(orig_size[0]), int(orig_size[1])
    box = mask_logits.new_tensor([[0.0, 0.0, width * scale / MASK_STRIDE, height * scale / MASK_STRIDE]]).float()
    return roi_align(mask_logits.float()[None], [box], output_size=(height, width), spatial_scale=1.0,
                     sampling_ratio=1, aligned=True)[0]


def fit_targets(target: MaskTargets, height: int, width: int) -> MaskTargets:
    """`target` padded (bottom/right, pixels not valid) or cropped to `height × width`: the input pixels the
    predicted masks cover (4 × their cells), so that masks and truth share normalised coordinates in the loss."""
    pad = (0, width - target.masks.shape[-1], 0, height - target.masks.shape[-2])
    if pad == (0, 0, 0, 0):
        return target
    valid = target.valid if target.valid is not None else target.masks.new_ones(target.masks.shape[-2:])
    return MaskTargets(target.labels, F.pad(target.masks, pad), F.pad(valid, pad))


class MaskClassificationTask(FrozenBackboneTask):
    """Trains a PEFT method, neck and mask-classification head on a frozen ViT.

    Args:
        backbone: the frozen ViT.
        neck: builds the neck given `in_channels` and `patch_size` (a Hydra partial); strides 4..32.
        head: builds the head given `in_channels` and `num_classes` (model/head=mask2former): it needs
            `predict_queries(pyramid) -> QueryPredictions` and `loss(queries, targets)`.
        class_names: one name per class, in contiguous-label order (sets the number of classes).
        optimizer: builds the optimiser from parameter groups.
        scheduler: builds the per-step lr schedule from the optimiser and `total_steps`.
        adapter: the PEFT method to place on the backbone (None: neck and head only).
        task_name: the name it serves under beside other tasks (`MultiTaskModel`).
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
        task_name: str | None = None,
    ) -> None:
        super().__init__()
        self.task_name = task_name
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.encoder = Encoder(backbone, neck, adapter)
        if tuple(self.encoder.strides) != (4, 8, 16, 32):
            raise ValueError(f"{type(self).__name__} needs a neck with strides (4, 8, 16, 32), got "
                             f"model.neck.strides={self.encoder.strides}")
        self.head = head(in_channels=self.encoder.out_channels, num_classes=self.num_classes)
        if not (callable(getattr(self.head, "predict_queries", None)) and callable(getattr(self.head, "loss", None))):
            raise ValueError(f"model.head: {type(self.head).__name__} predicts no per-query classes and masks; "
                             f"{type(self).__name__} needs a mask-classification head (model/head=mask2former)")
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def forward(self, image: Tensor) -> QueryPredictions:
        """Every decoder layer's class and mask logits (masks at stride 4) for a normalised B×3×H×W image."""
        return self.head.predict_queries(self.encoder(image))

    def mask_classification_loss(self, images: Tensor, targets: Sequence[MaskTargets], batch: Mapping[str, Any],
                                 batch_idx: int) -> Tensor:
        """The head's loss on a batch (logged as train/loss and its final-layer terms), checked to be finite.

        Args:
            images: B×3×S×S normalised (padded) images.
            targets: one `MaskTargets` per image at the images' size.
            batch: the batch (its image names go into a non-finite loss's message).
            batch_idx: the batch's index in the epoch.
        """
        queries = self(images)
        height, width = (MASK_STRIDE * size for size in queries.mask_logits[-1].shape[-2:])
        losses = self.head.loss(queries, [fit_targets(t, height, width) for t in targets])
        batch_size = len(targets)
        for key, value in losses.items():
            if key != "loss":
                self.log(f"train/{key}", value, batch_size=batch_size)
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch_size)
        return self.checked_loss(losses["loss"], batch, batch_idx)

    def image_queries(self, image: Tensor, scale: float, orig_size: Sequence[int]) -> tuple[Tensor, Tensor]:
        """The final layer's predictions for one image, its masks in original pixels.

        Args:
            image: 3×h×w normalised image, the original rescaled by `scale`.
            scale: the datamodule's rescale factor.
            orig_size: (height, width) of the original image.

        Returns:
            Class logits Q×(K+1) and mask logits Q×H×W (float32).
        """
        queries = self(image[None])
        return queries.class_logits[-1][0].float(), masks_to_original(queries.mask_logits[-1][0], scale, orig_size)

    def predict_each(self, images: Sequence[Tensor], scales: Sequence[float], orig_sizes: Sequence[Sequence[int]],
                     combine: Callable[[Tensor, Tensor], Any]) -> list[Any]:
        """Per image (each runs alone), `combine(class_logits, mask_logits)` of its `image_queries`; eval mode only.

        Args:
            images: the datamodule's resized, normalised images (3×h×w each).
            scales: per image, the datamodule's rescale factor.
            orig_sizes: per image, the original (height, width).
            combine: the mode's post-processing of one image's queries.
        """
        if self.training:
            raise RuntimeError(f"{type(self).__name__}.predict needs eval mode; call .eval() first")
        pairs = zip(images, scales, orig_sizes)
        return [combine(*self.image_queries(image, scale, size)) for image, scale, size in pairs]
