"""Bottleneck adapter: down-projection, GELU, zero-initialised up-projection, scale.

Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019 (sequential, after
attention and MLP); Chen et al., "AdaptFormer", NeurIPS 2022 (parallel to the MLP, scaled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vitadapter.adapters.registry import register_method
from vitadapter.adapters.residual_adapter import ResidualAdapterConfig


class BottleneckAdapter(nn.Module):
    """x -> scale * up(dropout(gelu(down(x)))); the caller adds the residual.

    The up-projection starts at zero, so a fresh adapter outputs exactly zero and the adapted
    model computes the frozen backbone's features bit for bit.
    """

    def __init__(self, dim: int, bottleneck_dim: int, scale: float = 1.0, learnable_scale: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck_dim)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck_dim, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        if learnable_scale:
            self.scale = nn.Parameter(torch.tensor(float(scale)))
        else:
            self.register_buffer("scale", torch.tensor(float(scale)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.dropout(self.act(self.down(x)))) * self.scale


@register_method("bottleneck")
@dataclass
class BottleneckAdapterConfig(ResidualAdapterConfig):
    """Bottleneck adapters; give `bottleneck_dim` or `reduction_factor` (dim // factor)."""

    bottleneck_dim: int | None = field(default=64, metadata={"help": "hidden width of the adapter"})
    reduction_factor: float | None = field(
        default=None, metadata={"help": "alternative to bottleneck_dim: hidden width = embed_dim / factor"}
    )
    scale: float = field(default=1.0, metadata={"help": "multiplier on the adapter output (AdaptFormer uses 0.1)"})
    learnable_scale: bool = field(default=False, metadata={"help": "train the scale as a parameter"})
    dropout: float = field(default=0.0, metadata={"help": "dropout inside the adapter"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.bottleneck_dim is None) == (self.reduction_factor is None):
            raise ValueError(
                "set exactly one of model.adapter.bottleneck_dim and model.adapter.reduction_factor "
                f"(got {self.bottleneck_dim} and {self.reduction_factor})"
            )
        if self.bottleneck_dim is not None and self.bottleneck_dim < 1:
            raise ValueError(f"model.adapter.bottleneck_dim must be >= 1, got {self.bottleneck_dim}")
        if self.reduction_factor is not None and self.reduction_factor <= 0:
            raise ValueError(f"model.adapter.reduction_factor must be > 0, got {self.reduction_factor}")

    def hidden_dim(self, dim: int) -> int:
        """The bottleneck width for tokens of width `dim`."""
        if self.bottleneck_dim is not None:
            return self.bottleneck_dim
        return max(1, round(dim / self.reduction_factor))

    def build(self, dim: int, num_prefix_tokens: int = 1) -> BottleneckAdapter:
        return BottleneckAdapter(dim, self.hidden_dim(dim), self.scale, self.learnable_scale, self.dropout)
