"""Multi-scale and flip test-time augmentation, averaging softmax probabilities like mmseg.

Each pass rescales the image, runs :func:`segment` ("whole" or "slide"), un-flips the logits if the
image was flipped, resizes them to the output size and converts them to probabilities; the
probabilities of all passes are averaged. Dense regression (depth) averages the raw outputs instead
(``softmax=False``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vitadapter.inference.sliding_window import SegForward, resize_bilinear, segment


def _scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(int(size[0] * scale + 0.5), 1), max(int(size[1] * scale + 0.5), 1)


def tta_inference(
    forward: SegForward,
    image: Tensor,
    output_size: tuple[int, int],
    mode: str = "whole",
    crop_size: int | tuple[int, int] = 512,
    stride: int | tuple[int, int] = 341,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    *,
    window_batch: int | None = 4,
    softmax: bool = True,
) -> Tensor:
    """Average class probabilities over rescaled (and optionally flipped) copies of the image.

    Args:
        forward: Maps a normalised image batch to logits at any resolution.
        image: B x 3 x H x W normalised images.
        output_size: (H_out, W_out) of the result, usually the original label size.
        mode: ``"whole"`` or ``"slide"``, passed to :func:`segment`.
        crop_size: Crop size for ``"slide"``.
        stride: Stride for ``"slide"``.
        scales: Image scale factors (ratios of the input size); ``(1.0,)`` means no rescaling.
        flip: Also run every scale on the horizontally flipped image.
        window_batch: Windows per forward call for ``"slide"``.
        softmax: Average softmax probabilities (classes); False averages the outputs as they are (depth).

    Returns:
        B x K x H_out x W_out averaged softmax probabilities (argmax over dim 1 gives the labels), or
        averaged outputs without ``softmax``.
    """
    if not scales:
        raise ValueError("scales must contain at least one scale factor")
    if any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {tuple(scales)}")
    out_size = (int(output_size[0]), int(output_size[1]))
    in_size = (int(image.shape[-2]), int(image.shape[-1]))
    prob_sum: Tensor | None = None
    passes = 0
    for scale in scales:
        scaled = image if scale == 1.0 else resize_bilinear(image, _scaled_size(in_size, scale))
        for flipped in (False, True) if flip else (False,):
            view = scaled.flip(-1) if flipped else scaled
            logits = segment(forward, view, mode, crop_size, stride, window_batch=window_batch)
            if flipped:
                logits = logits.flip(-1)
            logits = resize_bilinear(logits, out_size)
            dtype = torch.promote_types(logits.dtype, torch.float32)
            probs = F.softmax(logits, dim=1, dtype=dtype) if softmax else logits.to(dtype)
            prob_sum = probs if prob_sum is None else prob_sum + probs
            passes += 1
    assert prob_sum is not None
    return prob_sum if passes == 1 else prob_sum / passes


__all__ = ["tta_inference"]
