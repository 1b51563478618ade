"""What a mask-classification loss trains towards: per image, binary masks with their classes and the pixels
that count.

Semantic segmentation makes one mask per class present in the label map (Mask2Former's semantic training);
instance and panoptic data make one per object or stuff region. Unlabelled pixels (`ignore_index`, crowd
regions) are left out of the mask losses and the matching costs through `valid` (or, optionally, counted as
background of every mask, as Mask2Former's own semantic training counts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MaskTargets:
    """The ground truth of one image.

    Attributes:
        labels: M int64 contiguous class indices (0..K-1), one per mask.
        masks: M×H×W bool masks at the label's resolution.
        valid: H×W bool, the pixels the masks are known at; None: every pixel. An image with no valid pixel
            trains nothing (no class loss either: its queries have nothing to be told).
    """

    labels: Tensor
    masks: Tensor
    valid: Tensor | None = None

    def __post_init__(self) -> None:
        if self.labels.dim() != 1 or self.masks.dim() != 3 or self.masks.shape[0] != self.labels.shape[0]:
            raise ValueError(f"MaskTargets needs M labels and M×H×W masks, got {tuple(self.labels.shape)} and "
                             f"{tuple(self.masks.shape)}")
        if self.valid is not None and self.valid.shape != self.masks.shape[-2:]:
            raise ValueError(f"valid is {tuple(self.valid.shape)}, the masks are {tuple(self.masks.shape[-2:])}")

    @property
    def has_valid_pixels(self) -> bool:
        """Whether any pixel is labelled (an image without one is left out of the loss)."""
        return self.valid is None or bool(self.valid.any())


UNLABELLED_MODES = ("exclude", "background")


def semantic_targets(label_maps: Tensor, num_classes: int, ignore_index: int = 255,
                     unlabelled: str = "exclude") -> list[MaskTargets]:
    """One mask per class present in each label map.

    Args:
        label_maps: B×H×W int64 class indices, `ignore_index` where unlabelled.
        num_classes: the number of classes K (labels must be 0..K-1 or `ignore_index`).
        ignore_index: the label of unlabelled pixels.
        unlabelled: "exclude": unlabelled pixels are not valid (neither trained on nor costed); "background": they
            are background of every mask (as Mask2Former's own semantic training has them), so masks learn to
            stay off them. Either way an image without a labelled pixel trains nothing.

    Returns:
        One `MaskTargets` per image, its classes in increasing order.
    """
    if label_maps.dim() != 3:
        raise ValueError(f"expected B×H×W label maps, got shape {tuple(label_maps.shape)}")
    if unlabelled not in UNLABELLED_MODES:
        raise ValueError(f"unlabelled={unlabelled!r}; expected one of {UNLABELLED_MODES}")
    targets = []
    for label_map in label_maps:
        valid = label_map != ignore_index
        present = torch.unique(label_map[valid])
        outside = present[(present < 0) | (present >= num_classes)]
        if outside.numel():
            raise ValueError(f"label values {outside.tolist()} are neither classes 0..{num_classes - 1} nor "
                             f"ignore_index {ignore_index}; check the dataset's labels and data.class_names")
        if unlabelled == "background" and present.numel():
            valid = None
        targets.append(MaskTargets(present, label_map[None] == present[:, None, None], valid))
    return targets


__all__ = ["UNLABELLED_MODES", "MaskTargets", "semantic_targets"]
