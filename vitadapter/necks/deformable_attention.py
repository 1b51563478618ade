"""Multi-scale deformable attention in pure PyTorch (no extension to compile; CPU and GPU).

Zhu et al., "Deformable DETR: Deformable Transformers for End-to-End Object Detection", ICLR 2021.
Each query attends to a few points per head and level, placed at its reference point plus offsets
predicted from the query; the values there are read by bilinear interpolation and summed with
weights softmaxed over levels x points. The published CUDA kernel has no CPU path; this module
computes the same sum with `torch.nn.functional.grid_sample` (bilinear, zero padding,
`align_corners=False`), one call per level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sample_levels(value: Tensor, shapes: Sequence[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    """The weighted sum of bilinear samples of every level, per query and head.

    Args:
        value: B×N×M×C values of M heads, the levels' cells concatenated row-major (N = Σ h·w).
        shapes: (h, w) of each level.
        locations: B×Q×M×L×P×2 sampling points (x, y) in [0, 1] of each level's extent.
        weights: B×Q×M×L×P attention weights.

    Returns:
        B×Q×(M·C).
    """
    batch, _, heads, channels = value.shape
    queries = locations.shape[1]
    # grid_sample's grid spans [-1, 1] over the map's outer edges (align_corners=False)
    grids = (2 * locations - 1).permute(0, 2, 1, 3, 4, 5).flatten(0, 1)  # (B·M)×Q×L×P×2
    flat_weights = weights.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (B·M)×Q×L×P
    summed = None
    # weighting each level as it is sampled (instead of stacking the levels first) saves a copy of all samples
    for level, ((h, w), level_value) in enumerate(zip(shapes, value.split([h * w for h, w in shapes], dim=1))):
        level_map = level_value.permute(0, 2, 3, 1).reshape(batch * heads, channels, h, w)
        samples = F.grid_sample(level_map, grids[:, :, level], mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # (B·M)×C×Q×P
        weighted = (samples * flat_weights[:, None, :, level]).sum(-1)
        summed = weighted if summed is None else summed + weighted
    return summed.reshape(batch, heads * channels, queries).transpose(1, 2)


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention of queries over a multi-level feature map.

    Args:
        dim: query and output width.
        heads: attention heads.
        levels: levels of the value map.
        points: sampling points per head and level.
        value_ratio: the value projection's width relative to `dim` (ViT-Adapter's `deform_ratio`).
    """

    def __init__(self, dim: int, heads: int = 8, levels: int = 4, points: int = 4, value_ratio: float = 1.0) -> None:
        super().__init__()
        value_dim = int(dim * value_ratio)
        if value_dim % heads:
            raise ValueError(f"deformable attention: the value width {value_dim} (dim {dim} x value_ratio {value_ratio}) "
                             f"is not divisible by {heads} heads")
        self.heads, self.levels, self.points = heads, levels, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, value_dim)
        self.output_proj = nn.Linear(value_dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: head m's points fan out along angle 2πm/M at distances
        1..P cells (the largest coordinate 1), uniform attention, Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        distances = torch.arange(1, self.points + 1, dtype=torch.float32)
        fan = directions[:, None, None, :] * distances[None, None, :, None]  # M×1×P×2
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(fan.expand(self.heads, self.levels, self.points, 2).reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for projection in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(self, query: Tensor, reference_points: Tensor, value: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        """Attends from each query around its reference point on every level.

        Args:
            query: B×Q×dim.
            reference_points: B×Q×L×2 (or Q×L×2, shared by the batch) points (x, y) in [0, 1] of
                each level's extent.
            value: B×N×dim, the levels' cells concatenated row-major (N = Σ h·w).
            shapes: (h, w) of each of the L levels.

        Returns:
            B×Q×dim.
        """
        batch, queries, _ = query.shape
        if len(shapes) != self.levels:
            raise ValueError(f"deformable attention built for {self.levels} levels got {len(shapes)} shapes")
        if value.shape[1] != sum(h * w for h, w in shapes):
            raise ValueError(f"value has {value.shape[1]} tokens but the level shapes {list(shapes)} hold "
                             f"{sum(h * w for h, w in shapes)}")
        values = self.value_proj(value).unflatten(-1, (self.heads, -1))
        offsets = self.sampling_offsets(query).view(batch, queries, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(batch, queries, self.heads, self.levels * self.points)
        weights = weights.softmax(-1).view(batch, queries, self.heads, self.levels, self.points)
        reference = reference_points.expand(batch, queries, self.levels, 2) if reference_points.dim() == 3 \
            else reference_points
        # sampling positions in bf16 would be off by up to a cell on maps ~100 cells wide: sample in fp32 at least
        dtype = torch.promote_types(offsets.dtype, torch.float32)
        # offsets are in cells of each level: divide by the level's (w, h)
        level_sizes = torch.tensor([(w, h) for h, w in shapes], dtype=dtype, device=query.device)
        with torch.autocast(device_type=query.device.type, enabled=False):
            locations = reference.to(dtype)[:, :, None, :, None, :] + offsets.to(dtype) / level_sizes[:, None, :]
            sampled = sample_levels(values.to(dtype), shapes, locations, weights.to(dtype))
        return self.output_proj(sampled.to(values.dtype))


def grid_reference_points(
    query_grid: tuple[int, int],
    query_stride: float,
    level_grids: Sequence[tuple[int, int]],
    level_strides: Sequence[float],
    device: torch.device | None = None,
) -> Tensor:
    """Reference points of a grid of queries: each cell's centre, in [0, 1] of every level's extent.

    A map of stride s and h×w cells covers h·s × w·s pixels, which exceeds the image when the image
    is not a multiple of s (the ViT pads to whole patches, strided convolutions round up). Placing the
    centres in pixels and normalising by each level's own extent keeps every level aligned with the
    image (Deformable DETR's "valid ratios"); when every map covers the same extent this is
    `(i + 0.5) / h` for all levels, as ViT-Adapter computes it.

    Args:
        query_grid: (h, w) of the query map.
        query_stride: its stride in pixels.
        level_grids: (h, w) of each value level.
        level_strides: their strides in pixels.
        device: where to create the points.

    Returns:
        (h·w)×L×2 points (x, y), the queries in row-major order.
    """
    h, w = query_grid
    ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * query_stride
    xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * query_stride
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 1, 2)  # pixels (x, y)
    extents = torch.tensor([(lw * s, lh * s) for (lh, lw), s in zip(level_grids, level_strides)],
                           dtype=torch.float32, device=device)
    return centres / extents
