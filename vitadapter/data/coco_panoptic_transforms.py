"""Albumentations pipelines for panoptic segmentation: the detection pipelines' large-scale jitter on a segment map.

Train (Mask2Former's COCO panoptic recipe, as ``det_transforms``): rescale so the longer side is
``image_size`` × s with s ~ U(scale_range) -> random crop of at most ``image_size``² -> horizontal flip ->
normalise -> pad bottom/right to ``image_size``² (padding is void). Validation: rescale so the longer side is
``image_size`` -> normalise; the ground truth stays at the original size.

The segments travel as one H×W index map (0 void, k = the k-th segment), resampled by nearest neighbour, so
they stay disjoint and no segment id is invented between two others; binary masks are cut from it at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from vitadapter.data.det_transforms import (
    DetectionTransform,
    ScaleLongestSide,
    build_det_train_transform,
    build_det_val_transform,
)
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD

VOID = 0  # index-map value of pixels in no segment, and of the padding (the detection pipelines pad masks with 0)


class ScaleLongestSideNearest(ScaleLongestSide):
    """``ScaleLongestSide`` for label maps: the mask is resampled by nearest neighbour (no new values)."""

    def apply_to_mask(self, mask: np.ndarray, scale: float, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        """Resample a label map by nearest neighbour, with the image's exact scale."""
        if scale == 1.0:
            return mask
        return self._warp(mask, scale, out_hw, cv2.INTER_NEAREST, cv2.BORDER_REPLICATE)


def index_map(ids: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
    """H×W uint16 map of a segment-id map: k for the pixels of ``segment_ids[k - 1]``, 0 (void) elsewhere."""
    if len(segment_ids) >= np.iinfo(np.uint16).max:
        raise ValueError(f"{len(segment_ids)} segments in one image; at most {np.iinfo(np.uint16).max - 1} fit")
    if not len(segment_ids):
        return np.zeros(ids.shape, dtype=np.uint16)
    order = np.argsort(segment_ids)
    sorted_ids = np.asarray(segment_ids)[order]
    position = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.where(sorted_ids[position] == ids, order[position] + 1, VOID).astype(np.uint16)


def masks_from_index_map(mapped: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool N×H×W masks of the segments present in an index map, and their 0-based segment indices (ascending)."""
    present = np.unique(mapped)
    present = present[present != VOID].astype(np.int64)
    return torch.from_numpy(mapped[None] == present[:, None, None]), torch.from_numpy(present - 1)


class PanopticTransform:
    """Runs an albumentations Compose on an image and its segment index map; returns tensors and binary masks.

    Args:
        compose: A Compose with ``save_applied_params=True`` and one ``ScaleLongestSideNearest`` step.
    """

    def __init__(self, compose: A.Compose) -> None:
        self.compose = compose

    def set_random_seed(self, seed: int | None) -> None:
        """Reseed the pipeline (per training sample, see ``resumable_loading.keyed_index``)."""
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, index_map: np.ndarray | None = None) -> dict[str, Any]:
        """Transform one sample.

        Args:
            image: H×W×3 uint8 RGB image.
            index_map: Optional H×W uint16 map: 0 void, k for the k-th segment of the sample (1-based).

        Returns:
            ``{"image": float32 3×H'×W', "scale": float}``, and with an index map ``"masks"`` (bool N'×H'×W',
            one per segment still present, in segment order) and ``"segments"`` (int64 N': each mask's
            0-based segment index). ``scale`` maps original pixels to output pixels before any crop or flip.
        """
        data: dict[str, Any] = {"image": image}
        if index_map is not None:
            data["mask"] = np.ascontiguousarray(index_map, dtype=np.uint16)
        out = self.compose(**data)
        scale = next((p["scale"] for name, p in out["applied_transforms"] if name == ScaleLongestSideNearest.__name__),
                     None)
        if scale is None:
            raise ValueError("the panoptic pipeline must contain a ScaleLongestSideNearest step")
        result: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float(),
            "scale": float(scale),
        }
        if index_map is not None:
            result["masks"], result["segments"] = masks_from_index_map(np.asarray(out["mask"]))
        return result


def _on_segment_maps(detection: DetectionTransform, seed: int | None = None) -> PanopticTransform:
    """A detection pipeline's steps with ``ScaleLongestSideNearest`` for its rescale (no boxes to carry)."""
    steps = [ScaleLongestSideNearest(t.size, scale_range=t.scale_range) if isinstance(t, ScaleLongestSide) else t
             for t in detection.compose.transforms]
    return PanopticTransform(A.Compose(steps, save_applied_params=True, seed=seed))


def build_panoptic_train_transform(
    image_size: int = 1024, scale_range: Sequence[float] = (0.1, 2.0), mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD, seed: int | None = None,
) -> PanopticTransform:
    """``build_det_train_transform``'s large-scale jitter (same arguments) on a segment map; the padding is void."""
    return _on_segment_maps(build_det_train_transform(image_size, scale_range, mean, std), seed)


def build_panoptic_val_transform(
    image_size: int = 1024, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
) -> PanopticTransform:
    """``build_det_val_transform``'s pipeline (same arguments) for the image alone: original = transformed / scale."""
    return _on_segment_maps(build_det_val_transform(image_size, mean, std))
