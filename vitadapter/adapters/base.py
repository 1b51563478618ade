"""What every adapter shares: where it goes in a block, and how it wraps the sublayer there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

POSITIONS = ("attn", "mlp")
MODES = ("sequential", "parallel")


@dataclass
class AdapterConfig:
    """Placement shared by all adapters; subclasses add their own hyper-parameters and `build`."""

    position: Sequence[str] = field(
        default=("attn", "mlp"),
        metadata={"help": "sublayers to adapt: 'attn' (after attention) and/or 'mlp' (after or beside the MLP)"},
    )
    mode: str = field(
        default="sequential",
        metadata={"help": "'sequential': adapter on the sublayer's output; 'parallel': adapter beside it, same input"},
    )
    layers: Sequence[int] | None = field(
        default=None, metadata={"help": "0-based block indices to adapt (negative from the end); null = all blocks"}
    )

    def __post_init__(self) -> None:
        self.position = tuple(self.position) if not isinstance(self.position, str) else (self.position,)
        self.layers = None if self.layers is None else tuple(int(i) for i in self.layers)
        bad = [p for p in self.position if p not in POSITIONS]
        if bad or not self.position:
            raise ValueError(f"model.adapter.position={list(self.position)}: choose from {list(POSITIONS)}")
        if self.mode not in MODES:
            raise ValueError(f"model.adapter.mode={self.mode!r}: choose from {list(MODES)}")

    def build(self, dim: int, num_prefix_tokens: int = 1) -> nn.Module:
        """Creates one adapter for tokens of width `dim` (the first `num_prefix_tokens` are not patches)."""
        raise NotImplementedError


class SpatialAdapter(nn.Module):
    """An adapter that needs the patch grid; the backbone sets `grid` before every forward."""

    def __init__(self, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.grid: tuple[int, int] | None = None

    def grid_for(self, num_patches: int) -> tuple[int, int]:
        """The (h, w) patch grid of the current input, checked against the token count."""
        if self.grid is None or self.grid[0] * self.grid[1] != num_patches:
            raise RuntimeError(f"spatial adapter got {num_patches} patch tokens but grid {self.grid}; "
                               "call it through ViTBackbone, which sets the grid")
        return self.grid


class AdaptedSublayer(nn.Module):
    """A frozen block sublayer (attention or MLP) with an adapter on its output or beside it.

    The frozen sublayer keeps its own call signature (e.g. EVA's `rope=` keyword), so any timm
    block that calls `self.attn(...)` / `self.mlp(...)` can be adapted without being rewritten.
    """

    def __init__(self, base: nn.Module, adapter: nn.Module, mode: str) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter
        self.mode = mode

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        out = self.base(x, *args, **kwargs)
        if self.mode == "parallel":
            return out + self.adapter(x)
        return out + self.adapter(out)
