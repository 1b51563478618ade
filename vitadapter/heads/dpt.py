"""DPT depth head: DPT's fusion stage and depth output head on a 4-level pyramid.

Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021. DPT reassembles four ViT taps into maps at
strides 4, 8, 16 and 32 (1x1 projection, then transposed convs / a strided conv), then fuses them from the
coarsest up with residual conv units and ×2 upsampling, and ends in a small conv head. Here the reassemble stage
is the neck's (the multi-level neck is ViTDet's version of it: a projection and transposed convs / pooling per
tap), with DPT's "ignore" readout (the class token is not read); this head is the rest, laid out as the
`DPTHead` of the Monocular-Depth-Estimation-Toolbox and of DINOv2 (depth/models/decode_heads/dpt_head.py,
dinov2/eval/depth/models/decode_heads/dpt_head.py) with no norm layers: a 3x3 conv per level, fusion blocks,
a 3x3 conv + ReLU, then conv3x3 (C -> C/2), ×2, conv3x3 (-> 32), ReLU, conv1x1 (-> 1); depth = ReLU(x) + min_depth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from vitadapter.heads.conv_module import select_levels

DEFAULT_KEYS = ("s4", "s8", "s16", "s32")


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: x + conv(relu(conv(relu(x)))), 3x3 convs without bias (no norm, as DPT's).

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT's feature fusion: (x + unit(skip)), a second unit, bilinear upsampling, then a 1x1 conv.

    Args:
        channels: Width of the fused maps.
        with_skip: Whether the block adds a finer level (every block but the coarsest one's).
    """

    def __init__(self, channels: int, with_skip: bool) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels) if with_skip else None
        self.unit = ResidualConvUnit(channels)
        self.project = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor, skip: Tensor | None, size: Sequence[int]) -> Tensor:
        """Fuse and upsample.

        Args:
            x: The running map (the coarsest level's, for the first block).
            skip: The level of x's size to add (None for the first block).
            size: Output size: the next finer level's, or twice x's after the finest.
        """
        if self.skip_unit is not None and skip is not None:
            x = x + self.skip_unit(skip)
        x = F.interpolate(self.unit(x), size=tuple(size), mode="bilinear", align_corners=True)
        return self.project(x)


class DPTHead(nn.Module):
    """DPT's fusion stage + depth head: depth (metres, >= min_depth) at 4× the finest level's resolution.

    DPT upsamples ×2 per block; here each block upsamples to the next finer level's size (×2 when the sizes halve
    exactly), so odd input sizes work, and the finest level's block to twice its size.

    Args:
        in_channels: Channels of every pyramid level.
        min_depth: Added to the ReLU'd output: the smallest depth predicted (metres).
        max_depth: The largest depth of the data (kept for the task; the output is not capped).
        channels: Width of the fusion stage (DPT: 256).
        in_keys: Pyramid keys to read, finest first (any number; DPT: four at strides 4-32).
    """

    def __init__(
        self,
        in_channels: int,
        min_depth: float,
        max_depth: float,
        channels: int = 256,
        in_keys: Sequence[str] = DEFAULT_KEYS,
    ) -> None:
        super().__init__()
        if len(in_keys) < 1:
            raise ValueError("in_keys must name at least one pyramid level")
        if channels < 2:
            raise ValueError(f"channels must be >= 2, got {channels}")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.in_keys = tuple(in_keys)
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False) for _ in self.in_keys
        )
        # coarsest first: the coarsest level's block has nothing to add
        self.fusions = nn.ModuleList(FusionBlock(channels, with_skip=k > 0) for k in range(len(self.in_keys)))
        self.project = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.ReLU())
        self.depth_head = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, kernel_size=1),
        )

    def forward(self, pyramid: Mapping[str, Tensor]) -> Tensor:
        """Predict depth.

        Args:
            pyramid: `{key: N × in_channels × h_k × w_k}` containing `in_keys`.

        Returns:
            N × 1 × 4h_0 × 4w_0 depths in metres (h_0 × w_0: the finest level read).
        """
        levels = [conv(x) for conv, x in zip(self.convs, select_levels(pyramid, self.in_keys))][::-1]
        out = levels[0]
        for k, (fusion, level) in enumerate(zip(self.fusions, levels)):
            size = levels[k + 1].shape[-2:] if k + 1 < len(levels) else [2 * n for n in level.shape[-2:]]
            out = fusion(out, level if k else None, size)
        return F.relu(self.depth_head(self.project(out))) + self.min_depth
