"""Visual Prompt Tuning: learnable tokens that the frozen blocks attend to.

Jia et al., "Visual Prompt Tuning", ECCV 2022. `num_tokens` prompts are inserted after the model's
own prefix tokens (class, registers) and before the patches, after the position embedding (prompts
have no position). VPT-shallow inserts one set before the first adapted block; VPT-deep gives every
adapted block a new set that replaces the previous block's prompt outputs. Prompts are counted as
prefix tokens, so they never reach the pyramid.

Unlike zero-initialised adapters, fresh prompts change the features: every patch attends to them
from the first step, as in the paper.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from vitadapter.adapters.base import MethodConfig, MethodHooks
from vitadapter.adapters.registry import register_method
from vitadapter.backbone.families import Tokens

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone


def prompt_init_bound(patch_size: tuple[int, int], in_chans: int, dim: int) -> float:
    """VPT's Xavier-uniform bound, as for a linear map from one flattened patch to a token."""
    return math.sqrt(6.0 / (in_chans * patch_size[0] * patch_size[1] + dim))


class Prompts(MethodHooks):
    """The prompt tokens and where they enter the token sequence.

    Args:
        blocks: the adapted blocks, ascending; prompts enter before the first, and deep prompts
            replace the previous ones before each of the others.
        num_tokens: prompts per set.
        dim: token width.
        deep: one set per adapted block (True) or a single set (False).
        dropout: dropout on the prompts before they enter.
        init_bound: prompts start uniform in ±init_bound.
    """

    def __init__(self, blocks: list[int], num_tokens: int, dim: int, deep: bool, dropout: float,
                 init_bound: float) -> None:
        super().__init__()
        self.blocks = blocks if deep else blocks[:1]
        self.num_tokens = num_tokens
        self.slot = {block: k for k, block in enumerate(self.blocks)}
        self.prompts = nn.Parameter(torch.empty(len(self.blocks), num_tokens, dim))
        nn.init.uniform_(self.prompts, -init_bound, init_bound)
        self.dropout = nn.Dropout(dropout)

    def before_block(self, index: int, tokens: Tokens) -> Tokens:
        slot = self.slot.get(index)
        if slot is None:
            # not adapted: earlier prompts (if any) pass through with the previous block's outputs
            return tokens
        x = tokens.x
        prompts = self.dropout(self.prompts[slot]).unsqueeze(0).expand(x.shape[0], -1, -1).to(x.dtype)
        if slot == 0:
            start = tokens.num_prefix_tokens
            x = torch.cat((x[:, :start], prompts, x[:, start:]), dim=1)
            return dataclasses.replace(tokens, x=x, num_prefix_tokens=start + self.num_tokens)
        start = tokens.num_prefix_tokens - self.num_tokens  # the prompts are the last prefix tokens
        x = torch.cat((x[:, :start], prompts, x[:, tokens.num_prefix_tokens :]), dim=1)
        return dataclasses.replace(tokens, x=x)


@register_method("vpt")
@dataclass
class VPTConfig(MethodConfig):
    """Visual Prompt Tuning (shallow or deep).

    Shallow prompts enter before the first adapted block (block 0 unless `layers`/`drop_below` say
    otherwise). With `layers` or `drop_below`, deep prompts enter only the adapted blocks; a block that is not
    adapted keeps the prompt outputs of the block before it, and blocks before the first adapted
    one run without prompts.
    """

    num_tokens: int = field(default=50, metadata={"help": "prompts per set (the paper searches 1-200)"})
    deep: bool = field(default=True, metadata={"help": "new prompts before every adapted block (VPT-deep)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the prompts (the paper: 0.1)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_tokens < 1:
            raise ValueError(f"model.adapter.num_tokens must be >= 1, got {self.num_tokens}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.adapter.dropout must be in [0, 1), got {self.dropout}")
        if not self.deep and self.layers is not None and len(set(self.layers)) > 1:
            raise ValueError(
                f"model.adapter.layers={list(self.layers)}: shallow VPT (deep=false) inserts one set of prompts; "
                "give one block, or set model.adapter.deep=true"
            )

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        refusal = backbone.family.extra_tokens_refusal
        if refusal:
            raise ValueError(
                f"model.adapter.name={self.method_name!r} cannot prompt model.backbone.name={backbone.name!r}: "
                f"{refusal}. Choose a method that adds no tokens (e.g. model/adapter=bottleneck, convpass or ssf)."
            )
        blocks = self.block_indices(backbone)
        if not blocks:
            raise ValueError(
                f"model.adapter: no block to prompt (layers={self.layers}, drop_below={self.drop_below}, "
                f"{backbone.used_depth} blocks run); lower model.adapter.drop_below or change model.adapter.layers"
            )
        patch_embed = backbone.vit.patch_embed
        patch = patch_embed.patch_size
        patch = (int(patch[0]), int(patch[1])) if isinstance(patch, Sequence) else (int(patch), int(patch))
        in_chans = getattr(getattr(patch_embed, "proj", None), "in_channels", 3)
        bound = prompt_init_bound(patch, in_chans, backbone.embed_dim)
        return Prompts(blocks, self.num_tokens, backbone.embed_dim, self.deep, self.dropout, bound)
