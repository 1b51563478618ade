"""Whole-image and sliding-window segmentation inference, following mmseg's ``EncoderDecoder``.

``slide_inference`` tiles the image with overlapping crops (crop 512, stride 341 in the ViT ADE20K
recipes), runs the model on each, and averages the logits where windows overlap. The last window
along each axis is shifted back to end at the image border, so every window has the same size and
all of them can be stacked into one batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

SegForward = Callable[[Tensor], Tensor]
"""B x 3 x h x w normalised image -> B x K x h' x w' logits (any h', w')."""

Window = tuple[int, int, int, int]
"""(y1, y2, x1, x2) bounds of a crop, end-exclusive."""


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(int(v) < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def resize_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize an NCHW tensor (image or logits), ``align_corners=False``.

    Args:
        x: N x C x h x w tensor.
        size: Target (H, W).

    Returns:
        N x C x H x W tensor; ``x`` itself when it already has that size.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _check_image(image: Tensor) -> None:
    if image.dim() != 4:
        raise ValueError(f"expected a B x C x H x W image batch, got shape {tuple(image.shape)}")


def whole_inference(forward: SegForward, image: Tensor) -> Tensor:
    """Run the model once on the whole image.

    Args:
        forward: Maps a normalised image batch to logits at any resolution.
        image: B x 3 x H x W normalised images.

    Returns:
        B x K x H x W logits.
    """
    _check_image(image)
    return resize_bilinear(forward(image), tuple(image.shape[-2:]))


def sliding_windows(
    height: int, width: int, crop_size: int | tuple[int, int], stride: int | tuple[int, int]
) -> list[Window]:
    """Crop bounds covering an image, row-major, as mmseg's ``slide_inference`` places them.

    Args:
        height: Image height H.
        width: Image width W.
        crop_size: Crop size (h, w) or one int for both.
        stride: Step between crops (h, w) or one int; must not exceed the crop size.

    Returns:
        ``(y1, y2, x1, x2)`` per window; all windows have size ``(min(crop_h, H), min(crop_w, W))``.
    """
    crop_h, crop_w = _pair(crop_size, "crop_size")
    stride_h, stride_w = _pair(stride, "stride")
    if stride_h > crop_h or stride_w > crop_w:
        raise ValueError(f"stride {stride} larger than crop_size {crop_size} would leave gaps")
    h_grids = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    w_grids = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    windows = []
    for i in range(h_grids):
        y2 = min(i * stride_h + crop_h, height)
        y1 = max(y2 - crop_h, 0)
        for j in range(w_grids):
            x2 = min(j * stride_w + crop_w, width)
            x1 = max(x2 - crop_w, 0)
            windows.append((y1, y2, x1, x2))
    return windows


def slide_inference(
    forward: SegForward,
    image: Tensor,
    crop_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    *,
    window_batch: int | None = 4,
) -> Tensor:
    """Average the logits of overlapping crops.

    Args:
        forward: Maps a normalised image batch to logits at any resolution.
        image: B x 3 x H x W normalised images.
        crop_size: Crop size (h, w) or one int; an image smaller than the crop is one window.
        stride: Step between crops (h, w) or one int.
        window_batch: How many windows (each holding the whole batch B) share one forward call;
            ``None`` runs all windows in a single call.

    Returns:
        B x K x H x W logits.
    """
    _check_image(image)
    batch, _, height, width = image.shape
    windows = sliding_windows(height, width, crop_size, stride)
    chunk = len(windows) if window_batch is None else max(int(window_batch), 1)
    logits_sum: Tensor | None = None
    count = torch.zeros(1, 1, height, width, dtype=torch.int32, device=image.device)
    for start in range(0, len(windows), chunk):
        group = windows[start : start + chunk]
        crops = torch.cat([image[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in group])
        logits = resize_bilinear(forward(crops), tuple(crops.shape[-2:]))
        if logits_sum is None:
            dtype = torch.promote_types(logits.dtype, torch.float32)
            logits_sum = logits.new_zeros(batch, logits.shape[1], height, width, dtype=dtype)
        for k, (y1, y2, x1, x2) in enumerate(group):
            logits_sum[:, :, y1:y2, x1:x2] += logits[k * batch : (k + 1) * batch]
            count[:, :, y1:y2, x1:x2] += 1
    assert logits_sum is not None and bool((count > 0).all()), "windows must cover the image"
    return logits_sum / count


def segment(
    forward: SegForward,
    image: Tensor,
    mode: str = "whole",
    crop_size: int | tuple[int, int] = 512,
    stride: int | tuple[int, int] = 341,
    *,
    window_batch: int | None = 4,
) -> Tensor:
    """Dispatch to :func:`whole_inference` or :func:`slide_inference`.

    Args:
        forward: Maps a normalised image batch to logits at any resolution.
        image: B x 3 x H x W normalised images.
        mode: ``"whole"`` or ``"slide"``.
        crop_size: Crop size for ``"slide"``.
        stride: Stride for ``"slide"``.
        window_batch: Windows per forward call for ``"slide"`` (see :func:`slide_inference`).

    Returns:
        B x K x H x W logits.
    """
    if mode == "whole":
        return whole_inference(forward, image)
    if mode == "slide":
        return slide_inference(forward, image, crop_size, stride, window_batch=window_batch)
    raise ValueError(f"unknown inference mode {mode!r}; expected 'whole' or 'slide'")


__all__ = [
    "SegForward",
    "resize_bilinear",
    "segment",
    "slide_inference",
    "sliding_windows",
    "whole_inference",
]
