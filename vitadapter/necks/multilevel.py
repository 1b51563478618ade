"""Multi-level / simple feature pyramid from plain-ViT maps.

Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet), ECCV 2022:
one map of stride p rescaled by transposed convolutions (LayerNorm + GELU between), identity or
max-pooling, then 1×1 and 3×3 convolutions with LayerNorm. The multi-level variant used with BEiT
and DINOv2 segmentation feeds each level from a different tapped block instead of the last one.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from timm.layers import LayerNorm2d
from torch import Tensor, nn

from vitadapter.necks.base import Neck, ceil_div, fit_to_level, level_name


NECK_NORMS = ("ln", "bn")


def _norm(kind: str, channels: int) -> nn.Module:
    return LayerNorm2d(channels) if kind == "ln" else nn.BatchNorm2d(channels)


def _rescale(in_channels: int, octaves: int, norm: str) -> tuple[nn.Module, int]:
    """Upsamples by 2**octaves with transposed convs (octaves > 0) or max-pools (octaves < 0)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for step in range(max(octaves, 0)):
        if step:
            layers += [_norm(norm, channels), nn.GELU()]
        out = max(channels // 2, 32)
        layers.append(nn.ConvTranspose2d(channels, out, kernel_size=2, stride=2))
        channels = out
    layers += [nn.MaxPool2d(kernel_size=2, stride=2) for _ in range(max(-octaves, 0))]
    return (nn.Sequential(*layers) if layers else nn.Identity()), channels


class MultiLevelNeck(Neck):
    """ViT maps of stride `patch_size` -> pyramid at `strides` (default 4, 8, 16, 32).

    Each level's rescaling is the nearest power of two of patch_size / stride; when that is not
    exact (patch 14) the map is resized bilinearly to the padded grid's extent at that stride. The
    part that covers the patch padding is then cropped away, leaving ceil(H/stride)×ceil(W/stride).

    Args:
        in_channels: ViT width.
        patch_size: ViT patch size (the stride of its maps).
        out_channels: channels of every level.
        strides: output strides, finest first.
        source: "multi" feeds level k from tap k (taps shallowest first); "last" feeds every level
            from the last tap, as ViTDet's simple feature pyramid does.
        norm: "ln" (LayerNorm over channels, as ViTDet) or "bn" (BatchNorm, which trains faster
            from scratch at batch sizes of 8 and more; SyncBN under trainer=ddp).
        depth: the ViT blocks the encoder runs (unused: this neck reads only the taps).
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: int,
        out_channels: int = 256,
        strides: Sequence[int] = (4, 8, 16, 32),
        source: str = "multi",
        norm: str = "ln",
        depth: int | None = None,
    ) -> None:
        super().__init__(out_channels, strides)
        if source not in ("multi", "last"):
            raise ValueError(f"model.neck.source={source!r}: choose 'multi' or 'last'")
        if norm not in NECK_NORMS:
            raise ValueError(f"model.neck.norm={norm!r}: choose one of {NECK_NORMS}")
        self.source = source
        self.patch_size = patch_size
        self.rescales = nn.ModuleList()
        self.projections = nn.ModuleList()
        for stride in self.strides:
            rescale, channels = _rescale(in_channels, round(math.log2(patch_size / stride)), norm)
            self.rescales.append(rescale)
            self.projections.append(
                nn.Sequential(
                    nn.Conv2d(channels, out_channels, kernel_size=1, bias=False),
                    _norm(norm, out_channels),
                    nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                    _norm(norm, out_channels),
                )
            )

    def forward(self, features: list[Tensor], image: Tensor) -> OrderedDict[str, Tensor]:
        if self.source == "multi" and len(features) != len(self.strides):
            raise ValueError(f"the multi-level neck needs {len(self.strides)} taps, got {len(features)}")
        height, width = image.shape[-2:]
        pyramid: OrderedDict[str, Tensor] = OrderedDict()
        for k, (stride, rescale, project) in enumerate(zip(self.strides, self.rescales, self.projections)):
            feature = features[k] if self.source == "multi" else features[-1]
            # the transposed convs / pools rescale by the nearest power of two; fit_to_level finishes
            extent = (feature.shape[-2] * self.patch_size, feature.shape[-1] * self.patch_size)
            x = fit_to_level(rescale(feature), extent, stride, (ceil_div(height, stride), ceil_div(width, stride)))
            pyramid[level_name(stride)] = project(x)
        return pyramid
