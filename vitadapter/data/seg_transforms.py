"""Albumentations pipelines for semantic segmentation, following mmsegmentation's ADE20K recipe.

Train: random keep-ratio rescale into ``scale`` × U(ratio_range) -> random crop with ``cat_max_ratio``
-> horizontal flip (p=0.5) -> photometric distortion -> normalise -> pad to the crop size (image 0,
mask ``ignore_index``). Validation: keep-ratio rescale into ``scale`` -> normalise, applied to the
image only (labels stay at their original size; predictions are resized back to it).

Albumentations has neither mmseg's "rescale to fit a (long, short) box" nor a crop that rejects
crops dominated by one class, so ``RescaleToFit`` and ``CatMaxRatioRandomCrop`` are written here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

# albumentations asks PyPI for a newer version on every import (also in each spawned DataLoader
# worker); training jobs, often offline, should not wait on that. An explicit user setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vitadapter.data.loaders import checked_range  # noqa: E402

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        items = tuple(int(v) for v in value)
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = (items[0], items[1])
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair


class RescaleToFit(A.DualTransform):
    """Resize keeping the aspect ratio so the image fits a (long side, short side) box.

    As mmseg's ``Resize(img_scale=scale, ratio_range=..., keep_ratio=True)``: draw r ~ U(ratio_range)
    (r = 1 without a range), box = (max(scale)·r, min(scale)·r), factor = min(box_long / long_side,
    box_short / short_side). Images are resized bilinearly, masks with nearest neighbour.

    Args:
        scale: The box, e.g. (2048, 512); order does not matter.
        ratio_range: Optional (low, high) range for the random box multiplier.
        p: Probability of applying the transform.
    """

    def __init__(
        self,
        scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] | None = None,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.scale = _pair(scale, "scale")
        self.ratio_range = checked_range(ratio_range, "ratio_range")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Draw the box multiplier and compute the output size from the input shape."""
        h, w = params["shape"][:2]
        ratio = self.py_random.uniform(*self.ratio_range) if self.ratio_range else 1.0
        box_long, box_short = int(max(self.scale) * ratio), int(min(self.scale) * ratio)
        factor = min(box_long / max(h, w), box_short / min(h, w))
        return {"out_hw": (max(int(h * factor + 0.5), 1), max(int(w * factor + 0.5), 1))}

    def apply(self, img: np.ndarray, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        """Resize an image bilinearly."""
        if img.shape[:2] == out_hw:
            return img
        return cv2.resize(img, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        """Resize a label map with nearest neighbour, so no new label values appear."""
        if mask.shape[:2] == out_hw:
            return mask
        return cv2.resize(mask, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Names of the constructor arguments (for albumentations serialisation)."""
        return ("scale", "ratio_range")


class CatMaxRatioRandomCrop(A.DualTransform):
    """Random crop that avoids crops dominated by a single class (mmseg ``RandomCrop(cat_max_ratio)``).

    Draws up to ``max_tries`` crop positions and takes the first one whose most frequent labelled
    class covers less than ``cat_max_ratio`` of the crop's labelled (non-ignore) pixels with at least
    two classes present; if none qualifies, the last draw is kept. Images smaller than the crop are
    cropped to what exists (pad afterwards). Without a mask, or with ``cat_max_ratio >= 1``, it is a
    plain random crop.

    Args:
        height: Crop height.
        width: Crop width.
        cat_max_ratio: Upper bound on the share of the most frequent class.
        ignore_index: Label value not counted as a class.
        max_tries: Number of crop positions tried.
        p: Probability of applying the transform.
    """

    def __init__(
        self,
        height: int,
        width: int,
        cat_max_ratio: float = 0.75,
        ignore_index: int = 255,
        max_tries: int = 10,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.height, self.width = _pair((height, width), "crop size")
        if cat_max_ratio <= 0:
            raise ValueError(f"cat_max_ratio must be > 0, got {cat_max_ratio}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)
        self.max_tries = int(max_tries)

    def _dominated(self, crop: np.ndarray) -> bool:
        """True if the crop fails the cat_max_ratio test."""
        flat = crop.ravel()
        if flat.dtype.kind == "u" and flat.dtype.itemsize <= 2:
            counts = np.bincount(flat)  # much faster than np.unique for 8/16-bit labels
            if self.ignore_index < counts.size:
                counts[self.ignore_index] = 0
            counts = counts[counts > 0]
        else:
            values, counts = np.unique(flat, return_counts=True)
            counts = counts[values != self.ignore_index]
        return counts.size < 2 or counts.max() / counts.sum() >= self.cat_max_ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Choose the crop window, looking at the mask when one is given."""
        h, w = params["shape"][:2]
        ch, cw = min(self.height, h), min(self.width, w)
        mask = data.get("mask")
        check = mask is not None and self.cat_max_ratio < 1.0
        for _ in range(self.max_tries):
            y0 = self.py_random.randint(0, h - ch)
            x0 = self.py_random.randint(0, w - cw)
            if not check or not self._dominated(mask[y0 : y0 + ch, x0 : x0 + cw]):
                break
        return {"crop_box": (y0, x0, y0 + ch, x0 + cw)}

    def apply(self, img: np.ndarray, crop_box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        """Crop an image."""
        y0, x0, y1, x1 = crop_box
        return img[y0:y1, x0:x1]

    def apply_to_mask(self, mask: np.ndarray, crop_box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        """Crop a mask with the same window."""
        y0, x0, y1, x1 = crop_box
        return mask[y0:y1, x0:x1]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Names of the constructor arguments (for albumentations serialisation)."""
        return ("height", "width", "cat_max_ratio", "ignore_index", "max_tries")


def photometric_distortion() -> A.Sequential:
    """Build mmseg's ``PhotoMetricDistortion`` from albumentations parts, each step applied with p=0.5.

    Mapping (uint8 image):
      * brightness ±32 additive: ``RandomBrightnessContrast(brightness_limit=32/255, by_max=True)``,
        which adds β·255 with β ~ U(-32/255, 32/255).
      * contrast 0.5-1.5: ``RandomBrightnessContrast(contrast_limit=0.5)``, which multiplies by
        α ~ U(0.5, 1.5), as mmseg does (no mean centring).
      * saturation 0.5-1.5: ``ColorJitter(saturation=(0.5, 1.5))``; albumentations blends with the
        grey image where mmseg scales the HSV S channel: same range, slightly different curve.
      * hue ±18 OpenCV units (of 180): ``ColorJitter(hue=(-0.1, 0.1))``, which shifts H by
        factor·180 in OpenCV's HSV.
    mmseg randomises whether contrast comes before or after saturation/hue; here it always comes first.

    Returns:
        The composed distortion.
    """
    no_change = (1.0, 1.0)
    return A.Sequential(
        [
            A.RandomBrightnessContrast(
                brightness_limit=(-32 / 255, 32 / 255), contrast_limit=(0.0, 0.0), brightness_by_max=True, p=0.5
            ),
            A.RandomBrightnessContrast(brightness_limit=(0.0, 0.0), contrast_limit=(-0.5, 0.5), p=0.5),
            A.ColorJitter(brightness=no_change, contrast=no_change, saturation=(0.5, 1.5), hue=(0.0, 0.0), p=0.5),
            A.ColorJitter(brightness=no_change, contrast=no_change, saturation=no_change, hue=(-0.1, 0.1), p=0.5),
        ],
        p=1.0,
    )


def build_train_transform(
    crop_size: int | Sequence[int],
    scale: Sequence[int] = (2048, 512),
    ratio_range: Sequence[float] | None = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = 255,
    seed: int | None = None,
) -> A.Compose:
    """Build the mmseg-style training pipeline; call it as ``t(image=rgb_uint8, mask=labels)``.

    Args:
        crop_size: Crop (height, width), or one int for a square crop.
        scale: Rescale box (long, short) before the random ratio.
        ratio_range: Range of the random box multiplier; None keeps the box fixed.
        cat_max_ratio: Crop rejection threshold (see ``CatMaxRatioRandomCrop``); 1 disables it.
        mean: Per-channel mean in 0..1 units (timm convention).
        std: Per-channel std in 0..1 units.
        ignore_index: Label used for padding and not counted by the crop.
        seed: Seed of the pipeline's random state (None: fresh entropy).

    Returns:
        A Compose whose output image is float32 H×W×3 and mask has the crop size.
    """
    crop_h, crop_w = _pair(crop_size, "crop_size")
    return A.Compose(
        [
            RescaleToFit(scale=scale, ratio_range=ratio_range),
            CatMaxRatioRandomCrop(crop_h, crop_w, cat_max_ratio=cat_max_ratio, ignore_index=ignore_index),
            A.HorizontalFlip(p=0.5),
            photometric_distortion(),
            A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
            A.PadIfNeeded(
                min_height=crop_h,
                min_width=crop_w,
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
            ),
        ],
        p=1.0,
        seed=seed,
    )


def build_val_transform(
    scale: Sequence[int] = (2048, 512),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """Build the evaluation pipeline; call it on the image only: ``t(image=rgb_uint8)``.

    Args:
        scale: Rescale box (long, short); the aspect ratio is kept.
        mean: Per-channel mean in 0..1 units.
        std: Per-channel std in 0..1 units.

    Returns:
        A Compose producing a float32 H'×W'×3 image.
    """
    return A.Compose(
        [RescaleToFit(scale=scale), A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)],
        p=1.0,
    )
