"""Adapters on a block's residual branches (bottleneck, Convpass): where they sit and how they are placed.

timm's blocks compute `x + drop_path(scale(sublayer(norm(x))))`, where `scale` is LayerScale (DeiT-III,
DINOv2, EVA) or nothing. The adapter is added on the branch *after* the scale, so a frozen LayerScale
gamma never multiplies the adapter's output: sequentially on the branch's output (Houlsby), or in
parallel, fed with the sublayer's own input (AdaptFormer, Convpass). The drop-path module of the branch
is the one place every family (VisionTransformer, Eva, Beit) passes the scaled branch through, so the
adapter wraps it and timm's block code stays untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from vitadapter.adapters.base import MethodConfig, MethodHooks

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone

POSITIONS = {"attn": "drop_path1", "mlp": "drop_path2"}
MODES = ("sequential", "parallel")


class AdaptedBranch(nn.Module):
    """A block's residual branch with an adapter added after LayerScale.

    Args:
        branch: the block's drop-path module of that branch (identity in eval mode).
        sublayer: the attention or MLP whose input feeds a parallel adapter.
        adapter: the adapter module.
        mode: "sequential" (adapter on the scaled sublayer output), "parallel" (on the sublayer's input) or
            "both" (the adapter takes both: AdapterFusion, whose sources may be of either mode).
    """

    def __init__(self, branch: nn.Module, sublayer: nn.Module, adapter: nn.Module, mode: str) -> None:
        super().__init__()
        self.branch = branch
        self.adapter = adapter
        self.mode = mode
        self._sublayer_input: Tensor | None = None
        if mode in ("parallel", "both"):
            # a forward pre-hook reads the sublayer's input without replacing the sublayer
            sublayer.register_forward_pre_hook(self._record_input)

    def _record_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._sublayer_input = args[0]

    def forward(self, branch_output: Tensor) -> Tensor:
        if self.mode == "sequential":
            return self.branch(branch_output + self.adapter(branch_output))
        source, self._sublayer_input = self._sublayer_input, None
        if source is None:
            raise RuntimeError("a parallel adapter ran before its sublayer; the block must call the sublayer first")
        delta = self.adapter(source) if self.mode == "parallel" else self.adapter(branch_output, source)
        return self.branch(branch_output + delta)


@dataclass
class ResidualAdapterConfig(MethodConfig):
    """Placement shared by the residual-branch adapters; subclasses build the adapter module."""

    position: Sequence[str] = field(
        default=("attn", "mlp"),
        metadata={"help": "branches to adapt: 'attn' (after attention) and/or 'mlp' (after or beside the MLP)"},
    )
    mode: str = field(
        default="sequential",
        metadata={"help": "'sequential': adapter on the branch's output; 'parallel': beside the sublayer, same input"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.position = (self.position,) if isinstance(self.position, str) else tuple(self.position)
        bad = [p for p in self.position if p not in POSITIONS]
        if bad or not self.position:
            raise ValueError(f"model.adapter.position={list(self.position)}: choose from {list(POSITIONS)}")
        if self.mode not in MODES:
            raise ValueError(f"model.adapter.mode={self.mode!r}: choose from {list(MODES)}")

    def build(self, dim: int, num_prefix_tokens: int) -> nn.Module:
        """Creates one adapter for tokens of width `dim` (the first `num_prefix_tokens` are not patches)."""
        raise NotImplementedError

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        for index in self.block_indices(backbone):
            block = backbone.vit.blocks[index]
            for position in self.position:
                branch_name = POSITIONS[position]
                branch, sublayer = getattr(block, branch_name, None), getattr(block, position, None)
                if branch is None or sublayer is None:
                    raise ValueError(f"block {index} ({type(block).__name__}) has no `{position}` / `{branch_name}` "
                                     f"to adapt; use model.adapter.position without {position!r}")
                if isinstance(branch, AdaptedBranch):
                    raise ValueError(f"block {index}.{position} already has an adapter")
                adapter = self.build(backbone.embed_dim, backbone.num_prefix_tokens)
                setattr(block, branch_name, AdaptedBranch(branch, sublayer, adapter, self.mode))
        return None
