"""The encoder: image in, multi-scale pyramid out; it runs the frozen ViT's block loop itself.

Running the loop here (instead of timm's `forward_intermediates`) is what lets a PEFT method act
between blocks (deep prompts) and keeps every block a plain timm block. Blocks after the last tapped
one never run. A block whose input needs no gradient and that holds no trainable tensor runs under
`torch.no_grad()`: with the method's first trained block at k, blocks 0..k-1 (and the embedding) keep
no activations, and a frozen trunk under a neck that only reads it (the ViT-Adapter side mode, the
multi-level neck with `model/adapter=none`) keeps none at all. Every later block records its graph,
recomputed in the backward pass when `model.backbone.grad_checkpointing` is on.

No block runs in `torch.inference_mode()`: its outputs could then never be saved for backward by the
trainable neck, and no_grad already skips every autograd record.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves
from torch.utils.checkpoint import checkpoint

from vitadapter.adapters.base import MethodConfig, SpatialAdapter
from vitadapter.backbone import ViTBackbone
from vitadapter.backbone.families import Tokens
from vitadapter.necks import InterleavedNeck, Neck, TokensNeck

# timm's modules after the last block: a tensor trained there changes no block's input
POST_TRUNK_MODULES = ("norm", "fc_norm", "head", "head_drop", "attn_pool")


def _needs_gradient(tokens: Tokens) -> bool:
    """Whether the tokens, or a tensor the blocks read beside them (rotary embedding, bias), need a gradient."""
    return any(isinstance(leaf, Tensor) and leaf.requires_grad for leaf in tree_leaves([tokens.x, tokens.block_kwargs]))


def _neck_arguments(neck: Callable[..., nn.Module], backbone: ViTBackbone) -> dict[str, Any]:
    """What the encoder builds `neck` from: the ViT's width, patch size and the blocks it runs; for a
    `TokensNeck` (seen through the Hydra partial's `func`) also the number of taps and whether the ViT has a
    class token."""
    arguments: dict[str, Any] = {
        "in_channels": backbone.embed_dim, "patch_size": backbone.patch_size, "depth": backbone.used_depth
    }
    target = getattr(neck, "func", neck)
    if isinstance(target, type) and issubclass(target, TokensNeck):
        arguments["num_taps"] = len(backbone.out_indices)
        arguments["has_class_token"] = getattr(backbone.vit, "cls_token", None) is not None
    return arguments


class Encoder(nn.Module):
    """Frozen timm ViT + the PEFT method placed on it + the spatial module (neck).

    Args:
        backbone: the frozen ViT.
        neck: builds the spatial module from `in_channels`, `patch_size` and `depth` (the blocks the
            encoder runs) (a Hydra partial): a `Neck` reads the tapped maps after the ViT has run; a
            `TokensNeck` (the linear probes' `TappedTokens`), built with `num_taps` and `has_class_token` too,
            reads the tapped token states whole and the ViT's final norm; an `InterleavedNeck` (ViT-Adapter)
            runs between groups of those blocks.
        method: the PEFT method to place on the ViT (None: nothing, as method `none`).

    Attributes:
        backbone: the frozen ViT (with the method's modules placed inside).
        method: the method's config.
        hooks: the method's trainable state outside the blocks (prompts), or None.
        neck: the spatial module.
        out_channels, strides: the pyramid's channels and strides (from the neck).
    """

    def __init__(
        self,
        backbone: ViTBackbone,
        neck: Callable[..., Neck | TokensNeck | InterleavedNeck],
        method: MethodConfig | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.method = method
        self.hooks = method.apply(backbone) if method is not None else None
        self.neck = neck(**_neck_arguments(neck, backbone))
        self.out_channels: int = self.neck.out_channels
        self.strides: tuple[int, ...] = tuple(self.neck.strides)
        self._spatial_adapters = [m for m in backbone.vit.modules() if isinstance(m, SpatialAdapter)]
        self.merged = False

    def method_parameters(self) -> Iterator[nn.Parameter]:
        """The trainable tensors the method owns: those inside the ViT and in its hooks."""
        yield from (p for p in self.backbone.parameters() if p.requires_grad)
        if self.hooks is not None:
            yield from (p for p in self.hooks.parameters() if p.requires_grad)

    def embedding_trains(self) -> bool:
        """Whether a tensor the ViT uses before block 0 trains (patch and position embedding under `full`, BitFit's
        patch bias, ...)."""
        return any(p.requires_grad for name, p in self.backbone.vit.named_parameters()
                   if name.split(".")[0] not in ("blocks", *POST_TRUNK_MODULES))

    def block_trains(self, index: int) -> bool:
        """Whether block `index` holds a trainable tensor (a method's module or an unfrozen weight)."""
        return any(p.requires_grad for p in self.backbone.vit.blocks[index].parameters())

    def block_records_graph(self, index: int, tokens: Tokens) -> bool:
        """Whether block `index` on `tokens` must record its autograd graph: gradients are on and the block trains or
        its input carries a gradient (from an earlier trained block, prompts, ViT-Adapter's injectors, or the image)."""
        return torch.is_grad_enabled() and (self.block_trains(index) or _needs_gradient(tokens))

    def embed(self, image: Tensor) -> Tokens:
        """The tokens before block 0: the ViT's embedding (graph-free unless it trains or the image needs a
        gradient), then the method's (prompts)."""
        records = self.embedding_trains() or image.requires_grad
        with nullcontext() if records else torch.no_grad():
            tokens = self.backbone.family.embed(image)
        for adapter in self._spatial_adapters:
            adapter.grid = tokens.grid
        return self.hooks.on_embed(tokens) if self.hooks is not None else tokens

    def run_blocks(self, tokens: Tokens, blocks: range) -> Tokens:
        """Runs `blocks` of the ViT (with the method's hooks before each) on `tokens`.

        A block that need not record its graph (`block_records_graph`) runs under `torch.no_grad()`; one that does
        is checkpointed when `backbone.grad_checkpointing` is on in training.
        """
        family = self.backbone.family
        for index in blocks:
            if self.hooks is not None:
                tokens = self.hooks.before_block(index, tokens)
            if not self.block_records_graph(index, tokens):
                with torch.no_grad():
                    x = family.run_block(index, tokens)
            elif self.backbone.grad_checkpointing and self.training:
                # x as its own argument: checkpoint then keeps it where saved-tensor hooks see (and count) it
                x = checkpoint(self._run_block_on, index, tokens, tokens.x, use_reentrant=False)
            else:
                x = family.run_block(index, tokens)
            tokens = dataclasses.replace(tokens, x=x)
        return tokens

    def _run_block_on(self, index: int, tokens: Tokens, x: Tensor) -> Tensor:
        return self.backbone.family.run_block(index, dataclasses.replace(tokens, x=x))

    def tokens(self, image: Tensor) -> list[Tokens]:
        """Runs the ViT up to the last tapped block; the token state after each tapped block, in tap order."""
        tokens = self.embed(image)
        taps: dict[int, Tokens] = {}
        for index in range(self.backbone.used_depth):
            tokens = self.run_blocks(tokens, range(index, index + 1))
            if index in self.backbone.out_indices:
                taps[index] = tokens
        return [taps[index] for index in self.backbone.out_indices]

    def forward(self, image: Tensor) -> OrderedDict[str, Tensor]:
        """The pyramid {"s4": ..., "s32": ...} (NCHW, `out_channels` each) of a normalised B×3×H×W image."""
        if isinstance(self.neck, InterleavedNeck):
            return self.neck(image, self.embed(image), self.run_blocks)
        if isinstance(self.neck, TokensNeck):
            return self.neck(self.tokens(image), self.backbone.vit.norm, image)
        return self.neck([tap.patch_map() for tap in self.tokens(image)], image)

    def merge(self) -> None:
        """Folds a mergeable method into the frozen weights (for evaluation and export); idempotent."""
        if self.merged:
            return
        if self.method is None or not self.method.mergeable:
            name = self.method.method_name if self.method is not None else "none"
            raise ValueError(f"method {name!r} cannot be merged into the ViT")
        if self.backbone.shares_frozen_tensors:
            raise ValueError("this encoder's frozen ViT weights are shared with other tasks (MultiTaskModel): merging "
                             "would change them for every task; serve it unmerged (model.adapter.merge=false)")
        self.method.merge_into(self.backbone)
        self.merged = True
