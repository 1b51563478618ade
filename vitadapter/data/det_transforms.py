"""Albumentations pipelines for COCO detection and instance segmentation.

Train, ViTDet's large-scale jitter (Li et al., "Exploring Plain Vision Transformer Backbones for Object
Detection", ECCV 2022; after Ghiasi et al., "Simple Copy-Paste", CVPR 2021): rescale so the longer side
is ``image_size`` × s with s ~ U(scale_range) -> random crop of at most ``image_size``² -> horizontal
flip (p=0.5) -> normalise -> pad bottom/right with zeros to ``image_size``². Validation: rescale so the
longer side is ``image_size`` -> normalise (no padding; the detector batches).

Written here because albumentations lacks them: ``ScaleLongestSide`` (``LongestMaxSize`` only draws
from a list of sizes, and its rounded output size stretches the two axes by slightly different
factors, so no single ``scale`` maps its output back exactly), ``RandomCropAtMost`` (``RandomCrop``
rejects or pads images smaller than the crop), and ``DetectionTransform``, which keeps instance masks
aligned with the boxes albumentations keeps (it filters boxes, never the matching masks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI query on import (see seg_transforms)

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.augmentations.crops.transforms import BaseCrop  # noqa: E402

from vitadapter.data.loaders import checked_range  # noqa: E402
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

MIN_BOX_SIZE = 1.0  # pixels; narrower or shorter boxes are dropped, as in the dataset


class ScaleLongestSide(A.DualTransform):
    """Rescale so the longer side becomes ``size`` × r (r ~ U(scale_range), or 1), by one exact factor.

    The factor s = size·r / longer side is applied to both axes exactly (an affine warp aligned on
    pixel edges), so a point at x in the input lands at s·x in the output and ``params["scale"]``
    inverts it. The output is round(H·s) × round(W·s); the sub-pixel remainder at the bottom/right
    edge is filled by replicating the border. Downscaling blurs the image first (sigma = (1/s - 1)/2)
    against aliasing. Masks must be binary 0/1: they are interpolated bilinearly, which on uint8
    thresholds them at 0.5.

    Args:
        size: Target length of the longer side (before the random factor).
        scale_range: Optional (low, high) range of the random factor r.
        p: Probability of applying the transform.
    """

    def __init__(self, size: int, scale_range: Sequence[float] | None = None, p: float = 1.0) -> None:
        super().__init__(p=p)
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = int(size)
        self.scale_range = checked_range(scale_range, "scale_range")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Draw the factor and compute the output size from the input shape."""
        h, w = params["shape"][:2]
        ratio = self.py_random.uniform(*self.scale_range) if self.scale_range else 1.0
        scale = self.size * ratio / max(h, w)
        out_hw = (max(int(round(h * scale)), 1), max(int(round(w * scale)), 1))
        return {"scale": scale, "in_hw": (h, w), "out_hw": out_hw}

    @staticmethod
    def _warp(array: np.ndarray, scale: float, out_hw: tuple[int, int], interpolation: int, border: int) -> np.ndarray:
        shift = 0.5 * scale - 0.5  # maps pixel centres so that continuous coordinates scale by exactly `scale`
        matrix = np.array([[scale, 0.0, shift], [0.0, scale, shift]], dtype=np.float64)
        out = cv2.warpAffine(array, matrix, (out_hw[1], out_hw[0]), flags=interpolation, borderMode=border)
        return out.reshape(*out_hw, *array.shape[2:])  # warpAffine drops a trailing channel axis of size 1

    def apply(self, img: np.ndarray, scale: float, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        """Resample the image (Gaussian pre-blur when shrinking)."""
        if scale == 1.0:
            return img
        if scale < 1.0:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=(1.0 / scale - 1.0) / 2.0)
        return self._warp(img, scale, out_hw, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)

    def apply_to_mask(self, mask: np.ndarray, scale: float, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        """Resample a binary 0/1 mask (bilinear, rounded: a 0.5 threshold)."""
        if scale == 1.0:
            return mask
        return self._warp(mask, scale, out_hw, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT)

    def apply_to_bboxes(
        self, bboxes: np.ndarray, scale: float, in_hw: tuple[int, int], out_hw: tuple[int, int], **params: Any
    ) -> np.ndarray:
        """Map normalised boxes: pixel x -> s·x, renormalised by the (rounded) output size."""
        out = bboxes.copy()
        out[:, [0, 2]] *= in_hw[1] * scale / out_hw[1]
        out[:, [1, 3]] *= in_hw[0] * scale / out_hw[0]
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Names of the constructor arguments (for albumentations serialisation)."""
        return ("size", "scale_range")


class RandomCropAtMost(BaseCrop):
    """Random crop of ``min(height, H)`` × ``min(width, W)``: smaller images are kept whole (pad afterwards).

    Args:
        height: Largest crop height.
        width: Largest crop width.
        p: Probability of applying the transform.
    """

    def __init__(self, height: int, width: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        if min(int(height), int(width)) < 1:
            raise ValueError(f"crop size must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Choose the crop window."""
        h, w = params["shape"][:2]
        ch, cw = min(self.height, h), min(self.width, w)
        y0 = self.py_random.randint(0, h - ch)
        x0 = self.py_random.randint(0, w - cw)
        return {"crop_coords": (x0, y0, x0 + cw, y0 + ch)}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Names of the constructor arguments (for albumentations serialisation)."""
        return ("height", "width")


class DetectionTransform:
    """Run an albumentations Compose on an image with boxes, labels and instance masks, and return tensors.

    Boxes travel with an index label, so the masks of boxes that albumentations dropped (cropped away,
    narrower or shorter than 1 px) are dropped too; instances whose mask became empty are dropped as
    well. Boxes, labels and masks therefore stay aligned.

    Args:
        compose: A Compose with ``BboxParams(format="pascal_voc", label_fields=["labels", "indices"])``,
            ``save_applied_params=True`` and one ``ScaleLongestSide`` step.
        min_box_size: Boxes narrower or shorter than this (pixels, after the transform) are dropped.
    """

    def __init__(self, compose: A.Compose, min_box_size: float = MIN_BOX_SIZE) -> None:
        self.compose = compose
        self.min_box_size = float(min_box_size)

    def set_random_seed(self, seed: int | None) -> None:
        """Reseed the pipeline (per training sample, see ``resumable_loading.keyed_index``)."""
        self.compose.set_random_seed(seed)

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        masks: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Transform one sample.

        Args:
            image: H×W×3 uint8 RGB image.
            boxes: N×4 float xyxy boxes in pixels, inside the image.
            labels: N integer labels.
            masks: Optional N×H×W uint8 0/1 instance masks.

        Returns:
            ``{"image": float32 3×H'×W', "boxes": float32 N'×4, "labels": int64 N', "masks": uint8 N'×H'×W'
            or None, "scale": float}``, where ``scale`` is the rescale factor (output = input × scale,
            before any crop offset or flip).
        """
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        data: dict[str, Any] = {"image": image, "bboxes": boxes, "labels": labels, "indices": np.arange(len(boxes))}
        if masks is not None and len(masks):  # albumentations cannot stack an empty list of masks
            data["masks"] = masks
        out = self.compose(**data)
        scale = next((p["scale"] for name, p in out["applied_transforms"] if name == ScaleLongestSide.__name__), None)
        if scale is None:
            raise ValueError("the detection pipeline must contain a ScaleLongestSide step")
        h, w = out["image"].shape[:2]
        kept_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        kept_labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        kept = np.asarray(out["indices"], dtype=np.int64).reshape(-1)
        widths, heights = kept_boxes[:, 2] - kept_boxes[:, 0], kept_boxes[:, 3] - kept_boxes[:, 1]
        valid = (widths >= self.min_box_size) & (heights >= self.min_box_size)
        out_masks: np.ndarray | None = None
        if masks is not None:
            all_masks = np.asarray(out["masks"], dtype=np.uint8) if "masks" in out else np.zeros((0, h, w), np.uint8)
            out_masks = all_masks[kept].reshape(-1, h, w)
            valid &= out_masks.reshape(len(kept), h * w).any(axis=1)
            out_masks = out_masks[valid]
        image_t = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()
        return {
            "image": image_t,
            "boxes": torch.from_numpy(kept_boxes[valid]),
            "labels": torch.from_numpy(kept_labels[valid]),
            "masks": None if out_masks is None else torch.from_numpy(np.ascontiguousarray(out_masks)),
            "scale": float(scale),
        }


def _bbox_params(min_box_size: float) -> A.BboxParams:
    # min_width/min_height drop boxes that a crop reduced below one pixel; DetectionTransform drops their masks.
    return A.BboxParams(
        format="pascal_voc", label_fields=["labels", "indices"], min_width=min_box_size, min_height=min_box_size
    )


def build_det_train_transform(
    image_size: int = 1024,
    scale_range: Sequence[float] = (0.1, 2.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = None,
) -> DetectionTransform:
    """Build the ViTDet large-scale-jitter training pipeline.

    Args:
        image_size: Side of the square output.
        scale_range: Range of the random factor on the longer side (ViTDet: 0.1-2.0).
        mean: Per-channel mean in 0..1 units (timm convention).
        std: Per-channel std in 0..1 units.
        seed: Seed of the pipeline's random state (None: fresh entropy).

    Returns:
        A transform whose image is 3×image_size×image_size (zero padding bottom/right, after normalising).
    """
    compose = A.Compose(
        [
            ScaleLongestSide(image_size, scale_range=scale_range),
            RandomCropAtMost(image_size, image_size),
            A.HorizontalFlip(p=0.5),
            A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
            A.PadIfNeeded(
                min_height=image_size,
                min_width=image_size,
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
            ),
        ],
        bbox_params=_bbox_params(MIN_BOX_SIZE),
        save_applied_params=True,
        seed=seed,
    )
    return DetectionTransform(compose, min_box_size=MIN_BOX_SIZE)


def build_det_val_transform(
    image_size: int = 1024,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> DetectionTransform:
    """Build the evaluation pipeline: longer side to ``image_size`` (aspect kept, exact scale), normalise.

    Args:
        image_size: Length of the longer side after rescaling.
        mean: Per-channel mean in 0..1 units.
        std: Per-channel std in 0..1 units.

    Returns:
        A transform whose ``scale`` maps back exactly: original = transformed / scale.
    """
    compose = A.Compose(
        [ScaleLongestSide(image_size), A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)],
        bbox_params=_bbox_params(0.0),
        save_applied_params=True,
    )
    return DetectionTransform(compose, min_box_size=0.0)  # no crop: every box survives, only rescaled
