"""Albumentations pipelines for monocular depth, following the NYU recipe of the Depth-Estimation-Toolbox / DINOv2.

Train: [optional fixed keep-ratio rescale] -> random crop -> horizontal flip (p=0.5) -> colour
augmentation of the image (gamma, brightness, per-channel colour) -> normalise -> pad to the crop size
(image 0, depth 0 = invalid). Evaluation: [optional keep-ratio rescale into ``test_scale``] -> normalise,
applied to the image only (the depth stays at its original size; predictions are resized to it).

There is no random rescale: enlarging an image by k makes the scene look 1/k as far away, so a depth map
rescaled with it keeps values that no longer match the image (metric scale is lost); mmseg's depth recipes
leave it out for the same reason. The depth map is the albumentations ``mask``, so every geometric step
applies to image and depth alike and photometric steps to the image only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI query on import (see seg_transforms)

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from vitadapter.data.loaders import checked_range  # noqa: E402
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD, CatMaxRatioRandomCrop, RescaleToFit  # noqa: E402

# the Depth-Estimation-Toolbox's NYU ColorAug: with probability p, all three at once
DEFAULT_COLOUR_JITTER: dict[str, Any] = {"p": 0.5, "gamma": (0.9, 1.1), "brightness": (0.75, 1.25),
                                         "colour": (0.9, 1.1)}


def crop_hw(crop_size: int | Sequence[int]) -> tuple[int, int]:
    """``crop_size`` as a positive (height, width): one int gives a square."""
    hw = (int(crop_size),) * 2 if isinstance(crop_size, (int, float)) else tuple(int(v) for v in crop_size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"crop_size must be a positive int or (height, width), got {crop_size!r}")
    return hw[0], hw[1]


def colour_augmentation(
    p: float = 0.5,
    gamma: Sequence[float] | None = (0.9, 1.1),
    brightness: Sequence[float] | None = (0.75, 1.25),
    colour: Sequence[float] | None = (0.9, 1.1),
) -> A.Sequential:
    """Build the image-only colour augmentation: gamma, brightness and per-channel colour factors.

    Args:
        p: Probability of applying the three together.
        gamma: Range of the gamma exponent (image in 0..1 raised to it); None leaves it out.
        brightness: Range of the brightness factor; None leaves it out.
        colour: Range of an independent factor per RGB channel; None leaves it out.

    Returns:
        The composed augmentation.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"colour_jitter.p must be in [0, 1], got {p}")
    steps: list[A.BasicTransform] = []
    if gamma is not None:
        low, high = checked_range(gamma, "colour_jitter.gamma")
        steps.append(A.RandomGamma(gamma_limit=(100.0 * low, 100.0 * high), p=1.0))
    if brightness is not None:
        no_change = (1.0, 1.0)
        steps.append(A.ColorJitter(brightness=checked_range(brightness, "colour_jitter.brightness"),
                                   contrast=no_change, saturation=no_change, hue=(0.0, 0.0), p=1.0))
    if colour is not None:
        steps.append(A.MultiplicativeNoise(multiplier=checked_range(colour, "colour_jitter.colour"), per_channel=True,
                                           elementwise=False, p=1.0))
    return A.Sequential(steps, p=p)


def build_depth_train_transform(
    crop_size: int | Sequence[int],
    flip: bool = True,
    colour_jitter: Mapping[str, Any] | None = None,
    train_scale: Sequence[int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = None,
) -> A.Compose:
    """Build the depth training pipeline; call it as ``t(image=rgb_uint8, mask=depth_metres)``.

    Args:
        crop_size: Crop (height, width), or one int for a square crop; smaller images are padded.
        flip: Random horizontal flip (p=0.5).
        colour_jitter: Keyword arguments of ``colour_augmentation`` (p, gamma, brightness, colour); None turns it off.
        train_scale: Optional (long, short) box every training image is rescaled into first, keeping its
            aspect ratio (the same factor for all images of one size, unlike a random rescale); None keeps
            the original size.
        mean: Per-channel mean in 0..1 units.
        std: Per-channel std in 0..1 units.
        seed: Seed of the pipeline's random state (None: fresh entropy); training samples reseed it.

    Returns:
        A Compose whose output image is float32 crop_h×crop_w×3 and depth float32 crop_h×crop_w.
    """
    crop_h, crop_w = crop_hw(crop_size)
    steps: list[A.BasicTransform] = []
    if train_scale is not None:
        # RescaleToFit resizes the mask (here the depth) with nearest neighbour: bilinear weights would mix
        # foreground and background depths across an object's edge into depths of nothing in the scene, and
        # invalid zeros into valid neighbours; nearest neighbour only keeps measured values.
        steps.append(RescaleToFit(scale=train_scale))
    # cat_max_ratio 1: a plain random crop (no classes to balance); images smaller than the crop keep their size
    steps.append(CatMaxRatioRandomCrop(crop_h, crop_w, cat_max_ratio=1.0))
    if flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if colour_jitter is not None:
        steps.append(colour_augmentation(**dict(colour_jitter)))
    steps += [
        A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
        # padded pixels have no depth: 0 marks them invalid, so the loss skips them
        A.PadIfNeeded(min_height=crop_h, min_width=crop_w, position="top_left", border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=0),
    ]
    return A.Compose(steps, p=1.0, seed=seed)


def build_depth_val_transform(
    test_scale: Sequence[int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """Build the depth evaluation pipeline; call it on the image only: ``t(image=rgb_uint8)``.

    Args:
        test_scale: (long, short) box the image is rescaled into, keeping its aspect ratio (mmseg's keep-ratio
            resize); None keeps the original size.
        mean: Per-channel mean in 0..1 units.
        std: Per-channel std in 0..1 units.

    Returns:
        A Compose producing a float32 H'×W'×3 image.
    """
    steps: list[A.BasicTransform] = [] if test_scale is None else [RescaleToFit(scale=test_scale)]
    steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    return A.Compose(steps, p=1.0)
