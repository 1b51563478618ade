"""ViT-Adapter's interaction modules: the injector (spatial prior -> ViT tokens) and the extractor
(ViT tokens -> spatial prior), both multi-scale deformable cross-attention.

Chen et al., "Vision Transformer Adapter for Dense Predictions", ICLR 2023, section 3.3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import DropPath
from torch import Tensor, nn

from vitadapter.necks.deformable_attention import MultiScaleDeformableAttention


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


class Injector(nn.Module):
    """ViT tokens attend to the spatial prior: `x + gamma * attention(LN(x), LN(prior))`.

    `gamma` (one value per channel) starts at zero, so at initialisation the ViT computes exactly
    its own features.

    Args:
        dim: width of the tokens and the prior.
        heads, points, value_ratio: deformable attention settings.
        levels: levels of the prior (3: strides 8, 16, 32).
    """

    def __init__(self, dim: int, heads: int, points: int, value_ratio: float, levels: int = 3) -> None:
        super().__init__()
        self.query_norm = _layer_norm(dim)
        self.feature_norm = _layer_norm(dim)
        self.attention = MultiScaleDeformableAttention(dim, heads, levels, points, value_ratio)
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, reference_points: Tensor, prior: Tensor, prior_shapes: Sequence[tuple[int, int]]) -> Tensor:
        """Returns the injected B×N×dim patch tokens `x`; `prior` is B×M×dim over `prior_shapes`."""
        attended = self.attention(self.query_norm(x), reference_points, self.feature_norm(prior), prior_shapes)
        return x + self.gamma * attended


class ConvFFN(nn.Module):
    """Token MLP with a depth-wise 3×3 convolution over each level's map between its two layers.

    Args:
        dim: token width.
        hidden: hidden width.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        """B×N×dim tokens of the levels `shapes` (concatenated row-major) -> B×N×dim."""
        x = self.fc1(x)
        levels = []
        for (h, w), tokens in zip(shapes, x.split([h * w for h, w in shapes], dim=1)):
            level_map = tokens.transpose(1, 2).unflatten(-1, (h, w))
            levels.append(self.depthwise(level_map).flatten(2).transpose(1, 2))
        return self.fc2(self.act(torch.cat(levels, dim=1)))


class Extractor(nn.Module):
    """The spatial prior attends to the ViT tokens, then a convolutional FFN:
    `c = c + attention(LN(c), LN(x))`, `c = c + drop_path(ConvFFN(LN(c)))`.

    Args:
        dim: width of the tokens and the prior.
        heads, points, value_ratio: deformable attention settings.
        ffn_ratio: the ConvFFN's hidden width relative to `dim`.
        drop_path: stochastic depth of the FFN branch.
    """

    def __init__(self, dim: int, heads: int, points: int, value_ratio: float, ffn_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.query_norm = _layer_norm(dim)
        self.feature_norm = _layer_norm(dim)
        self.attention = MultiScaleDeformableAttention(dim, heads, 1, points, value_ratio)
        self.ffn_norm = _layer_norm(dim)
        self.ffn = ConvFFN(dim, int(dim * ffn_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self,
        prior: Tensor,
        reference_points: Tensor,
        prior_shapes: Sequence[tuple[int, int]],
        x: Tensor,
        grid: tuple[int, int],
    ) -> Tensor:
        """Returns the updated B×M×dim prior; `x` is the B×N×dim patch tokens of the ViT `grid`."""
        prior = prior + self.attention(self.query_norm(prior), reference_points, self.feature_norm(x), [grid])
        return prior + self.drop_path(self.ffn(self.ffn_norm(prior), prior_shapes))
