"""Depth training losses: the scale-invariant log loss (SigLoss) and MegaDepth's multi-scale gradient loss.

Eigen et al., "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network", NeurIPS 2014 (the
scale-invariant error), in the form of the Monocular-Depth-Estimation-Toolbox's and DINOv2's `SigLoss`
(`zhyever/Monocular-Depth-Estimation-Toolbox` depth/models/losses/sigloss.py, `facebookresearch/dinov2`
dinov2/eval/depth/models/losses/sigloss.py); Li and Snavely, "MegaDepth", CVPR 2018 (the gradient loss).

Both are exactly 0, with a zero gradient, for a batch without a valid pixel, and stay finite for a single one;
`0 x pred.sum()` is added so that a NaN/Inf prediction still makes the loss non-finite (the loss guard then
stops the run) even where no pixel is valid.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _log_ratio(pred: Tensor, target: Tensor, valid: Tensor, eps: float) -> Tensor:
    """log(pred + eps) - log(target + eps) at valid pixels, 0 elsewhere, in float32.

    Invalid pixels are replaced before the log (not masked after it), so an invalid target of 0 or a
    prediction there can put no Inf or NaN into the value or the gradient.
    """
    one = torch.ones((), dtype=torch.float32, device=pred.device)
    pred = torch.where(valid, pred.float(), one)
    target = torch.where(valid, target.float(), one)
    return torch.log(pred + eps) - torch.log(target + eps)


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt(x) for x >= 0 whose gradient at x = 0 is 0 instead of NaN (0 x Inf)."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def scale_invariant_log_loss(
    pred: Tensor,
    target: Tensor,
    valid: Tensor,
    mean_weight: float = 0.15,
    eps: float = 1e-3,
    warm_up: bool = False,
) -> Tensor:
    """SigLoss over the valid pixels of the whole batch: sqrt(var(g) + mean_weight x mean(g)^2).

    g = log(pred + eps) - log(target + eps) at every valid pixel of the batch, pooled (the toolbox indexes the
    batch with its mask); var is the unbiased variance (`torch.var`'s default, which the toolbox calls), taken
    as 0 for a single pixel instead of NaN. With the toolbox's 0.15 this equals sqrt(mean(g^2) - 0.85 mean(g)^2)
    up to the n/(n-1) factor (BTS calls that 0.85 its "variance focus"); 1.0 makes it the RMS log error, which
weighs a global scale error fully.

    Args:
        pred: predicted depth (metres), any shape (B×H×W at the ground truth's size).
        target: ground-truth depth, same shape.
        valid: boolean mask of the pixels that count, same shape.
        mean_weight: weight of mean(g)^2, the global (scale) part of the error (the toolbox's and DINOv2's 0.15).
        eps: added inside both logs (DINOv2's 1e-3; the toolbox's version adds 0.1 in warm-up and none after).
        warm_up: the toolbox's warm-up form sqrt(mean_weight x mean(g)^2) (its first 100 iterations).

    Returns:
        The 0-dim float32 loss.
    """
    g = _log_ratio(pred, target, valid, eps)
    count = valid.sum()
    mean = g.sum() / count.clamp_min(1)
    squared_mean = mean_weight * mean.square()
    if warm_up:
        loss = _safe_sqrt(squared_mean)
    else:
        variance = torch.where(valid, g - mean, 0.0).square().sum() / (count - 1).clamp_min(1)
        loss = _safe_sqrt(variance + squared_mean)
    return loss + 0.0 * pred.sum(dtype=torch.float32)


def gradient_loss(pred: Tensor, target: Tensor, valid: Tensor, scales: int = 4, eps: float = 1e-3) -> Tensor:
    """MegaDepth's multi-scale gradient-matching loss on log depth.

    Per image and scale (every 2^k-th pixel in both directions, k < `scales`, as MegaDepth subsamples its
    prediction), R = log(pred + eps) - log(target + eps); the loss is the sum of |R(i, j) - R(i + 2, j)| and
    |R(i, j) - R(i, j + 2)| over pairs of valid pixels, divided by the image's valid pixels at that scale; the
    scales are summed and the images averaged (those without a valid pixel are left out). MegaDepth's
    `GradientLoss` compares pixels 2 apart, as here. DINOv2's port (dinov2/eval/depth/models/losses/
    gradientloss.py) subsamples with steps 2, 4, 6 and slices the first two dimensions of its B×1×H×W input, so
    it differences across the batch instead of the image; this follows MegaDepth.

    Args:
        pred: predicted depth (metres), B×H×W or B×1×H×W.
        target: ground-truth depth, same shape.
        valid: boolean mask of the pixels that count, same shape.
        scales: number of scales (MegaDepth: 4).
        eps: added inside both logs (as DINOv2's port).

    Returns:
        The 0-dim float32 loss.
    """
    height, width = pred.shape[-2:]
    ratio = _log_ratio(pred, target, valid, eps).reshape(-1, height, width)
    mask = valid.reshape(-1, height, width).float()
    per_image = ratio.new_zeros(ratio.shape[0])
    for k in range(scales):
        r, m = ratio[:, :: 2**k, :: 2**k], mask[:, :: 2**k, :: 2**k]
        vertical = (r[:, :-2] - r[:, 2:]).abs() * m[:, :-2] * m[:, 2:]
        horizontal = (r[:, :, :-2] - r[:, :, 2:]).abs() * m[:, :, :-2] * m[:, :, 2:]
        per_image = per_image + (vertical.sum((1, 2)) + horizontal.sum((1, 2))) / m.sum((1, 2)).clamp_min(1)
    images = mask.flatten(1).amax(1).sum()
    return per_image.sum() / images.clamp_min(1) + 0.0 * pred.sum(dtype=torch.float32)
