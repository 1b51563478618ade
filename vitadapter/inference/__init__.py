"""Segmentation inference: whole-image, sliding-window and test-time augmentation."""

from vitadapter.inference.sliding_window import (
    SegForward,
    resize_bilinear,
    segment,
    slide_inference,
    sliding_windows,
    whole_inference,
)
from vitadapter.inference.tta import tta_inference

__all__ = [
    "SegForward",
    "resize_bilinear",
    "segment",
    "slide_inference",
    "sliding_windows",
    "tta_inference",
    "whole_inference",
]
