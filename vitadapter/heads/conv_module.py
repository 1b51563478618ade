"""Building blocks shared by the decode heads: conv-norm-act, the pixel classifier, resizing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import statically_known_true

NORMS = ("bn", "gn", "none")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        # 32 groups as in the GN paper, fewer when the width is not a multiple of 32.
        return nn.GroupNorm(math.gcd(32, channels), channels)
    raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")


class ConvNormAct(nn.Sequential):
    """Conv2d, then BatchNorm2d / GroupNorm (optional), then ReLU (optional).

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        kernel_size: Square kernel size.
        padding: Zero padding; defaults to ``kernel_size // 2`` (same size for odd kernels).
        norm: ``"bn"``, ``"gn"`` or ``"none"``; the conv has a bias only without a norm.
        act: Append a ReLU.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        padding: int | None = None,
        norm: str = "bn",
        act: bool = True,
    ) -> None:
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
        pad = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, padding=pad, bias=norm == "none")
        ]
        if norm != "none":
            layers.append(_norm_layer(norm, out_ch))
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SegClassifier(nn.Sequential):
    """Dropout2d followed by the 1x1 pixel classifier, initialised normal(std=0.01), bias 0.

    Args:
        channels: Input feature channels.
        num_classes: Number of output logits per pixel.
        dropout: Channel dropout probability (0 disables it).
    """

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(conv.weight, mean=0.0, std=0.01)
        nn.init.zeros_(conv.bias)
        super().__init__(nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(), conv)


def resize_to(x: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Bilinearly resize NCHW ``x`` to ``size`` (H, W); returns ``x`` unchanged if already there.

    Args:
        x: Feature map.
        size: Target (H, W).
        align_corners: Passed to :func:`torch.nn.functional.interpolate`.

    Returns:
        The resized map.
    """
    # statically_known_true: under torch.export (ONNX export) an equality it cannot prove for every size resizes,
    # which for equal sizes is the identity; in eager mode it is the plain comparison
    if statically_known_true(x.shape[-2] == size[0]) and statically_known_true(x.shape[-1] == size[1]):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def select_levels(pyramid: Mapping[str, Tensor], keys: Sequence[str]) -> list[Tensor]:
    """Pick pyramid levels by key, with a helpful error when one is missing.

    Args:
        pyramid: Neck output, e.g. ``{"s4": ..., "s8": ..., "s16": ..., "s32": ...}``.
        keys: Keys to select, finest first.

    Returns:
        The maps in ``keys`` order.
    """
    missing = [k for k in keys if k not in pyramid]
    if missing:
        raise KeyError(
            f"pyramid lacks levels {missing}; it has {list(pyramid)} (head expects {list(keys)})"
        )
    return [pyramid[k] for k in keys]
