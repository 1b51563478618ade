"""Convpass: a bottleneck adapter with a k×k convolution over the token grid.

Jie & Deng, "Convolutional Bypasses Are Better Vision Transformer Adapters", 2022. The convolution
gives the adapter a local spatial prior that plain (token-wise) bottleneck adapters lack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vitadapter.adapters.base import SpatialAdapter
from vitadapter.adapters.registry import register_method
from vitadapter.adapters.residual_adapter import ResidualAdapterConfig


class ConvpassAdapter(SpatialAdapter):
    """tokens -> down -> (k×k conv on the patch grid) -> GELU -> zero-initialised up -> × scale.

    Prefix (class/register) tokens skip the convolution. The grid is set by the encoder before
    each forward (`SpatialAdapter.grid`).
    """

    def __init__(self, dim: int, bottleneck_dim: int, num_prefix_tokens: int, scale: float = 1.0,
                 kernel_size: int = 3) -> None:
        super().__init__(num_prefix_tokens)
        self.down = nn.Linear(dim, bottleneck_dim)
        self.conv = nn.Conv2d(bottleneck_dim, bottleneck_dim, kernel_size, padding=kernel_size // 2)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck_dim, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.register_buffer("scale", torch.tensor(float(scale)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.down(x)
        prefix, patches = hidden[:, : self.num_prefix_tokens], hidden[:, self.num_prefix_tokens :]
        height, width = self.grid_for(patches.shape[1])
        batch, _, channels = patches.shape
        grid = patches.transpose(1, 2).reshape(batch, channels, height, width)
        patches = self.conv(grid).flatten(2).transpose(1, 2)
        return self.up(self.act(torch.cat([prefix, patches], dim=1))) * self.scale


@register_method("convpass")
@dataclass
class ConvpassAdapterConfig(ResidualAdapterConfig):
    """Convpass adapters (bottleneck with a convolution over the patch grid)."""

    mode: str = field(default="parallel", metadata={"help": "Convpass runs beside the sublayer (paper); or 'sequential'"})
    bottleneck_dim: int = field(default=8, metadata={"help": "hidden width of the adapter"})
    kernel_size: int = field(default=3, metadata={"help": "side of the convolution over the patch grid"})
    scale: float = field(default=1.0, metadata={"help": "multiplier on the adapter output"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bottleneck_dim < 1:
            raise ValueError(f"model.adapter.bottleneck_dim must be >= 1, got {self.bottleneck_dim}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"model.adapter.kernel_size must be odd and >= 1, got {self.kernel_size}")

    def build(self, dim: int, num_prefix_tokens: int = 1) -> ConvpassAdapter:
        return ConvpassAdapter(dim, self.bottleneck_dim, num_prefix_tokens, self.scale, self.kernel_size)
