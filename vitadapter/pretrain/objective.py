"""The upstream objective: every patch token predicts the classes of the pixels in its patch.

A global label (one class per image, through the class token) would teach little about where things are, and the
backbone is for dense prediction; so each patch token predicts, through one linear layer, a `subpixels` x
`subpixels` grid of its patch's pixels, each pixel's class given as three factors (a linear layer per pixel over
1028 classes would learn each combination separately from few pixels):

* region: the background kind (4) or the object's shape (16);
* texture (8) and colour (8), on object pixels only.

The loss is the sum of the factors' cross-entropies (colour weighted by `colour_weight`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitadapter.data.synthetic.upstream_shapes import (
    UPSTREAM_BACKGROUNDS,
    UPSTREAM_COLOURS,
    UPSTREAM_SHAPES,
    UPSTREAM_TEXTURES,
    label_factors,
    upstream_class_names,
)

FACTORS: tuple[tuple[str, int], ...] = (
    ("region", len(UPSTREAM_BACKGROUNDS) + len(UPSTREAM_SHAPES)),
    ("texture", len(UPSTREAM_TEXTURES)),
    ("colour", len(UPSTREAM_COLOURS)),
)
IGNORE = -1


def factor_table() -> Tensor:
    """Per class of `upstream_class_names()`: its (region, texture, colour) targets, `IGNORE` where none applies."""
    factors = label_factors(np.arange(len(upstream_class_names())))
    region = np.where(factors["shape"] >= 0, len(UPSTREAM_BACKGROUNDS) + factors["shape"], factors["background"])
    return torch.from_numpy(np.stack([region, factors["texture"], factors["colour"]], axis=1))


class DensePixelHead(nn.Module):
    """A linear layer from each patch token to its patch's pixel grid of factor logits.

    Args:
        embed_dim: token width.
        patch_size: the ViT's patch side in pixels.
        subpixels: predicted pixels per patch side (a divisor of patch_size).
    """

    def __init__(self, embed_dim: int, patch_size: int, subpixels: int) -> None:
        super().__init__()
        if subpixels < 1 or patch_size % subpixels:
            raise ValueError(f"pretrain.objective.subpixels={subpixels} must divide the patch size {patch_size}")
        self.subpixels = subpixels
        self.stride = patch_size // subpixels
        self.channels = sum(n for _, n in FACTORS)
        self.proj = nn.Linear(embed_dim, self.channels * subpixels * subpixels)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """Patch tokens B×N×D of an h×w grid -> logits B×C×(h·s)×(w·s), s = subpixels."""
        b, n, _ = tokens.shape
        h, w = grid
        logits = self.proj(tokens).transpose(1, 2).reshape(b, -1, h, w)
        return F.pixel_shuffle(logits, self.subpixels)


class FactorLoss(nn.Module):
    """Cross-entropy of each factor at the predicted pixels (the centre pixel of each `stride` x `stride` cell).

    Args:
        stride: pixels per predicted pixel (patch size / subpixels).
        colour_weight: weight of the colour factor's loss.
    """

    def __init__(self, stride: int, colour_weight: float = 0.5) -> None:
        super().__init__()
        self.stride = stride
        self.weights = {"region": 1.0, "texture": 1.0, "colour": colour_weight}
        self.register_buffer("table", factor_table(), persistent=False)

    def targets(self, labels: Tensor, size: tuple[int, int]) -> Tensor:
        """Labels B×H×W -> factor targets B×3×h×w at the predicted pixels (the image padded with ignore)."""
        centre = self.stride // 2
        sampled = labels[:, centre::self.stride, centre::self.stride]
        targets = self.table[sampled].permute(0, 3, 1, 2)
        h, w = size
        return F.pad(targets, (0, w - targets.shape[-1], 0, h - targets.shape[-2]), value=IGNORE)

    def forward(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns the weighted total and, per factor, its loss and pixel accuracy (over labelled pixels)."""
        targets = self.targets(labels, logits.shape[-2:])
        total, parts, start = logits.new_zeros((), dtype=torch.float32), {}, 0
        for index, (name, count) in enumerate(FACTORS):
            factor_logits, target = logits[:, start:start + count].float(), targets[:, index]
            start += count
            valid = target != IGNORE
            if not valid.any():  # no object pixel in the batch: no texture or colour to learn
                continue
            loss = F.cross_entropy(factor_logits, target, ignore_index=IGNORE)
            total = total + self.weights[name] * loss
            parts[f"{name}_loss"] = loss.detach()
            parts[f"{name}_acc"] = (factor_logits.argmax(1)[valid] == target[valid]).float().mean().detach()
        return total, parts
