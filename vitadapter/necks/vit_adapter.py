"""ViT-Adapter as a spatial module of the encoder, around a frozen ViT.

Chen et al., "Vision Transformer Adapter for Dense Predictions", ICLR 2023. A convolutional spatial
prior module sees the image; before each group of ViT blocks an injector writes the prior into the
patch tokens (scaled by a learnable gamma that starts at 0), after it an extractor reads the tokens
back into the prior (two extra extractors after the last group). The prior's levels at strides 8,
16 and 32, a stride-4 level from a transposed convolution plus the stem's, and the ViT's output of
each group added back make the pyramid, one BatchNorm per level.

The deformable attention samples in [0, 1] coordinates of each map, so the ViT's grid and the prior's
need not share a stride: any patch size (DINOv2's 14) and any input size work unchanged.

With `grad_checkpointing` (the official code's `with_cp`) the spatial prior, every injector and every
extractor (its ConvFFN included) keep only their inputs and run again in the backward pass: the
neck's levels have the ViT's width at strides 4-32, so its activations outweigh a frozen ViT's.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vitadapter.backbone.families import Tokens
from vitadapter.necks.base import InterleavedNeck, RunBlocks, fit_to_level, level_name
from vitadapter.necks.deformable_attention import MultiScaleDeformableAttention, grid_reference_points
from vitadapter.necks.interaction import Extractor, Injector
from vitadapter.necks.spatial_prior import SPATIAL_PRIOR_STRIDES, SpatialPriorModule
from vitadapter.utils.checkpointing import checkpointed, checkpointing_applies


@dataclass(frozen=True)
class ViTAdapterSize:
    """One of the paper's model sizes (its Table 1 settings for ViT-T/S/B/L).

    Attributes:
        width: the ViT width it belongs to.
        heads: deformable attention heads.
        value_ratio: value width relative to the ViT width.
        drop_path: stochastic depth of the extractors' FFN branch.
    """

    width: int
    heads: int
    value_ratio: float
    drop_path: float


VIT_ADAPTER_SIZES = {
    "T": ViTAdapterSize(192, 6, 1.0, 0.1),
    "S": ViTAdapterSize(384, 6, 1.0, 0.2),
    "B": ViTAdapterSize(768, 12, 0.5, 0.3),
    "L": ViTAdapterSize(1024, 16, 0.5, 0.4),
}


def size_for_width(width: int) -> str:
    """The preset whose ViT width is nearest to `width` (192 -> T, 384 -> S, 768 -> B, 1024 -> L)."""
    return min(VIT_ADAPTER_SIZES, key=lambda name: abs(VIT_ADAPTER_SIZES[name].width - width))


def heads_dividing(width: int, preferred: int) -> int:
    """The head count nearest to `preferred` that divides `width` (the fewer heads on a tie)."""
    return min((h for h in range(1, width + 1) if width % h == 0), key=lambda h: (abs(h - preferred), h))


def block_groups(depth: int, count: int = 4) -> list[range]:
    """Splits `depth` blocks into up to `count` groups of consecutive blocks, as evenly as possible.

    12 blocks -> 0-2, 3-5, 6-8, 9-11; 24 -> 0-5, ..., 18-23; 6 -> 0, 1-2, 3, 4-5; 2 -> 0, 1.
    """
    if depth < 1:
        raise ValueError(f"ViT-Adapter needs at least one ViT block, got depth {depth}")
    count = min(count, depth)
    ends = [(k + 1) * depth // count for k in range(count)]
    return [range(start, end) for start, end in zip([0, *ends[:-1]], ends)]


class ViTAdapterNeck(InterleavedNeck):
    """ViT-Adapter's spatial prior, injectors and extractors around the encoder's ViT blocks.

    Args:
        in_channels: ViT width (also the width of every output level).
        patch_size: ViT patch size.
        depth: ViT blocks the encoder runs, split into up to four groups (`block_groups`).
        size: "T", "S", "B" or "L"; None picks the preset nearest to the ViT width.
        heads, value_ratio, drop_path: override the preset's values (None keeps them). A preset's
            head count that does not divide the value width becomes the nearest that does.
        points: sampling points per head and level.
        ffn_ratio: hidden width of the extractors' ConvFFN relative to the ViT width.
        inject: True is the paper's design; False keeps only the extractors, so the frozen ViT runs
            without an autograd graph (a side network).
        extra_extractors: extractors after the last group.
        prior_channels: width of the spatial prior's stem.
        grad_checkpointing: recompute the spatial prior, injectors and extractors in the backward pass instead
            of keeping their activations (training only; outputs, gradients and BatchNorm statistics unchanged).
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: int,
        depth: int,
        size: str | None = None,
        heads: int | None = None,
        value_ratio: float | None = None,
        drop_path: float | None = None,
        points: int = 4,
        ffn_ratio: float = 0.25,
        inject: bool = True,
        extra_extractors: int = 2,
        prior_channels: int = 64,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__(in_channels, SPATIAL_PRIOR_STRIDES)
        if size is not None and size not in VIT_ADAPTER_SIZES:
            raise ValueError(f"model.neck.size={size!r}: choose one of {sorted(VIT_ADAPTER_SIZES)} or null")
        for key, value, least in (("points", points, 1), ("extra_extractors", extra_extractors, 0),
                                  ("prior_channels", prior_channels, 1)):
            if value < least:
                raise ValueError(f"model.neck.{key}={value}: must be at least {least}")
        self.size = size or size_for_width(in_channels)
        preset = VIT_ADAPTER_SIZES[self.size]
        value_ratio = preset.value_ratio if value_ratio is None else value_ratio
        value_width = int(in_channels * value_ratio)
        if heads is None:
            heads = heads_dividing(value_width, preset.heads)
        drop_path = preset.drop_path if drop_path is None else drop_path
        self.patch_size = patch_size
        self.grad_checkpointing = grad_checkpointing
        self.groups = block_groups(depth)
        attention = {"heads": heads, "points": points, "value_ratio": value_ratio}

        self.spatial_prior = SpatialPriorModule(in_channels, prior_channels)
        self.level_embed = nn.Parameter(torch.zeros(3, in_channels))
        self.injectors = nn.ModuleList(Injector(in_channels, **attention) for _ in self.groups) if inject else None
        self.extractors = nn.ModuleList(
            Extractor(in_channels, **attention, ffn_ratio=ffn_ratio, drop_path=drop_path)
            for _ in range(len(self.groups) + extra_extractors)
        )
        self.upsample = nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2)
        self.norms = nn.ModuleList(nn.BatchNorm2d(in_channels) for _ in self.strides)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """ViT-Adapter's initialisation: truncated-normal linears, He (fan-out) convolutions, then
        Deformable DETR's own initialisation of the attention."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                # He init over the fan-out per group (torch's kaiming_normal_ would ignore the groups)
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    def group_of_level(self, level: int) -> int:
        """Which group's ViT output is added back to pyramid level `level` (0 = stride 4)."""
        return level * len(self.groups) // len(self.strides)

    def _run(self, module: nn.Module, *args: object) -> object:
        """`module(*args)`, checkpointed when `grad_checkpointing` applies."""
        if checkpointing_applies(self, self.grad_checkpointing):
            return checkpointed(module, *args)
        return module(*args)

    def forward(self, image: Tensor, tokens: Tokens, run_blocks: RunBlocks) -> OrderedDict[str, Tensor]:
        stem, *prior_maps = self._run(self.spatial_prior, image)
        prior_shapes = [tuple(level.shape[-2:]) for level in prior_maps]
        prior_strides = SPATIAL_PRIOR_STRIDES[1:]
        prior = torch.cat(
            [level.flatten(2).transpose(1, 2) + embed for level, embed in zip(prior_maps, self.level_embed)], dim=1
        )
        grid = tokens.grid
        inject_points = grid_reference_points(grid, self.patch_size, prior_shapes, prior_strides, image.device)
        extract_points = torch.cat([
            grid_reference_points(shape, stride, [grid], [self.patch_size], image.device)
            for shape, stride in zip(prior_shapes, prior_strides)
        ])

        vit_maps = []
        for group, blocks in enumerate(self.groups):
            if self.injectors is not None:
                tokens = tokens.with_patches(
                    self._run(self.injectors[group], tokens.patches(), inject_points, prior, prior_shapes))
            tokens = run_blocks(tokens, blocks)
            vit_maps.append(tokens.patch_map())
            extractors = self.extractors[group:] if group == len(self.groups) - 1 else self.extractors[group:group + 1]
            for extractor in extractors:
                prior = self._run(extractor, prior, extract_points, prior_shapes, tokens.patches(), grid)

        batch = image.shape[0]
        levels = [
            part.transpose(1, 2).reshape(batch, self.out_channels, *shape)
            for part, shape in zip(prior.split([h * w for h, w in prior_shapes], dim=1), prior_shapes)
        ]
        # 2 * ceil(H/8) may exceed ceil(H/4) by one: crop to the stem's map
        upsampled = self.upsample(levels[0])[..., : stem.shape[-2], : stem.shape[-1]]
        levels.insert(0, stem + upsampled)
        pyramid: OrderedDict[str, Tensor] = OrderedDict()
        extent = (grid[0] * self.patch_size, grid[1] * self.patch_size)
        for k, (stride, level, norm) in enumerate(zip(self.strides, levels, self.norms)):
            vit = fit_to_level(vit_maps[self.group_of_level(k)], extent, stride, tuple(level.shape[-2:]))
            pyramid[level_name(stride)] = norm(level + vit)
        return pyramid
