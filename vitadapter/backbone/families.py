"""How each timm ViT family turns an image into tokens and runs one block, so the encoder owns the loop.

timm's plain ViTs come in three code families that differ only in their embedding and in what a
block needs beside the tokens: `VisionTransformer` (DeiT, DeiT-III, AugReg, DINOv2, CLIP, SigLIP,
FlexiViT, `*_gap_*`), `Eva` (EVA-02, Perception Encoder, the RoPE ViTs, DINOv3 with its 4 registers
and no absolute position embedding: rotary embeddings per block) and `Beit` (a relative-position
bias per block, built for one window size). Each family here calls timm's own modules (patch
embedding, position embedding, blocks) and nothing else, so pretrained weights load as timm loads
them and a block computes exactly what timm computes.

`embed` and `run_block` are what the encoder calls; they run the family's `_embed` / `_run_block` under
`frozen_compute`, so weights kept in bfloat16 (`model.backbone.frozen_dtype`) also serve a run without autocast,
whose tokens stay in the input's dtype between blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

from vitadapter.backbone.precision import frozen_compute
from vitadapter.backbone.relative_bias import RelativeBiasResampler


# what the encoder runs before the first block, by timm's names across the three families
EMBEDDING_MODULES = ("patch_embed", "norm_pre", "rope", "rel_pos_bias")
EMBEDDING_TENSORS = ("cls_token", "reg_token", "pos_embed")

# resampled BEiT tables kept per table: a few grids (training crop, sliding window, recent whole images)
CACHED_GRIDS = 8


@dataclass
class Tokens:
    """The token sequence between blocks and what the blocks need to read it.

    Attributes:
        x: B×N×D tokens: `num_prefix_tokens` non-patch tokens (class, registers, prompts), then
            the patches in row-major order.
        grid: (h, w) of the patch grid.
        num_prefix_tokens: tokens before the patches.
        block_kwargs: extra keyword arguments per block call (rotary embeddings, relative bias).
    """

    x: Tensor
    grid: tuple[int, int]
    num_prefix_tokens: int
    block_kwargs: dict[str, Any] = field(default_factory=dict)

    def patches(self) -> Tensor:
        """The B×(h·w)×D patch tokens (prefix tokens dropped)."""
        return self.x[:, self.num_prefix_tokens :]

    def with_patches(self, patches: Tensor) -> Tokens:
        """The same tokens with the patch tokens replaced (prefix tokens kept)."""
        x = torch.cat([self.x[:, : self.num_prefix_tokens], patches], dim=1) if self.num_prefix_tokens else patches
        return replace(self, x=x)

    def patch_map(self) -> Tensor:
        """The patch tokens as a B×D×h×w map (prefix tokens dropped)."""
        patches = self.patches()
        batch, _, dim = patches.shape
        return patches.transpose(1, 2).reshape(batch, dim, *self.grid)


class ViTFamily:
    """Embedding and block calls of one timm ViT code family.

    Args:
        vit: the timm model.
        frozen_dtype: the dtype its weight matrices are kept in.

    Attributes:
        extra_tokens_refusal: why tokens without a position (VPT prompts) cannot be added to this
            model, or None when they can.
    """

    extra_tokens_refusal: str | None = None

    def __init__(self, vit: nn.Module, frozen_dtype: torch.dtype = torch.float32) -> None:
        self.vit = vit
        self.frozen_dtype = frozen_dtype

    def embed(self, image: Tensor) -> Tokens:
        """Patch embedding, position embedding and prefix tokens (in the image's dtype without autocast)."""
        with frozen_compute(self.frozen_dtype, image) as autocast:
            tokens = self._embed(image)
        return replace(tokens, x=tokens.x.to(image.dtype)) if autocast else tokens

    def run_block(self, index: int, tokens: Tokens) -> Tensor:
        """Runs block `index` on `tokens` and returns the new B×N×D tokens (in their dtype without autocast)."""
        with frozen_compute(self.frozen_dtype, tokens.x) as autocast:
            x = self._run_block(index, tokens)
        return x.to(tokens.x.dtype) if autocast else x

    def _embed(self, image: Tensor) -> Tokens:
        raise NotImplementedError

    def _run_block(self, index: int, tokens: Tokens) -> Tensor:
        return self.vit.blocks[index](tokens.x, **tokens.block_kwargs)


class VisionTransformerFamily(ViTFamily):
    """timm `VisionTransformer`: absolute position embedding (resampled per grid by timm)."""

    def _embed(self, image: Tensor) -> Tokens:
        vit = self.vit
        x = vit.patch_embed(image)  # B×h×w×D with dynamic_img_size
        grid = (x.shape[1], x.shape[2])  # no int(): sizes stay symbolic under torch.export (ONNX export)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        return Tokens(x, grid, vit.num_prefix_tokens)


class EvaFamily(ViTFamily):
    """timm `Eva`: optional absolute embedding plus rotary embeddings handed to every block."""

    def __init__(self, vit: nn.Module, frozen_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(vit, frozen_dtype)
        if getattr(vit, "rope", None) is not None:
            self.extra_tokens_refusal = (
                "its attention applies rotary position embeddings (RoPE) to every token after the prefix, so "
                "tokens without a grid position would shift every patch's rotation"
            )

    def _embed(self, image: Tensor) -> Tokens:
        vit = self.vit
        x = vit.patch_embed(image)
        grid = (x.shape[1], x.shape[2])  # no int(): sizes stay symbolic under torch.export (ONNX export)
        x, rope = vit._pos_embed(x)
        return Tokens(vit.norm_pre(x), grid, vit.num_prefix_tokens, {"rope": rope})

    def _run_block(self, index: int, tokens: Tokens) -> Tensor:
        rope = tokens.block_kwargs["rope"]
        if getattr(self.vit, "rope_mixed", False) and rope is not None:
            rope = rope[index]  # mixed RoPE: one embedding per depth
        return self.vit.blocks[index](tokens.x, rope=rope)


class BeitFamily(ViTFamily):
    """timm `Beit`: fixed-size patch embedding and relative-position tables built for one window.

    BEiT's tables are resampled to each input's grid from the untouched pretrained table (as timm's
    checkpoint filter does for a new image size), so one model serves every input size. timm's
    attention reads its table through `_get_rel_pos_bias()`; for the length of each block call the
    block's attention gets one that returns the bias for that call's token grid, so the model is
    plain timm outside the encoder and no grid is remembered between calls (or across copies of the
    model). See `vitadapter.backbone.relative_bias` for when a resampled table is reused.
    """

    extra_tokens_refusal = (
        "its relative-position bias covers exactly the class token and the patch grid, so added tokens have "
        "no bias entry"
    )

    def __init__(self, vit: nn.Module, frozen_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(vit, frozen_dtype)
        # inputs of any size, padded at the bottom and right to whole patches: ceil(H/p) x ceil(W/p) tokens
        vit.patch_embed.strict_img_size = False
        vit.patch_embed.dynamic_img_pad = True
        tables = sum(getattr(b.attn, "relative_position_bias_table", None) is not None for b in vit.blocks)
        tables += vit.rel_pos_bias is not None
        self.relative_bias = RelativeBiasResampler(capacity=CACHED_GRIDS * max(tables, 1))

    def _embed(self, image: Tensor) -> Tokens:
        vit = self.vit
        x = vit.patch_embed(image)
        grid = tuple(vit.patch_embed.dynamic_feat_size(tuple(image.shape[-2:])))
        if x.shape[1] != grid[0] * grid[1]:
            raise RuntimeError(
                f"BEiT's patch embedding made {x.shape[1]} tokens of a {tuple(image.shape[-2:])} image, not the "
                f"{grid[0]}x{grid[1]} grid its relative-position bias is built for: its patch_embed must pad "
                "inputs to whole patches (dynamic_img_pad=True)"
            )
        x = torch.cat((vit.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        if vit.pos_embed is not None:
            x = x + resample_abs_pos_embed(
                vit.pos_embed, new_size=grid, old_size=vit.patch_embed.grid_size, num_prefix_tokens=1
            )
        shared = vit.rel_pos_bias
        bias = (
            self.relative_bias.for_grid(shared.relative_position_bias_table, tuple(shared.window_size), grid)
            if shared is not None else None
        )
        return Tokens(vit.pos_drop(x), grid, 1, {"shared_rel_pos_bias": bias})

    def _run_block(self, index: int, tokens: Tokens) -> Tensor:
        block = self.vit.blocks[index]
        attn = block.attn
        if getattr(attn, "relative_position_bias_table", None) is None:
            return block(tokens.x, **tokens.block_kwargs)
        table, window = attn.relative_position_bias_table, tuple(attn.window_size)
        bias = self.relative_bias.for_grid(table, window, tokens.grid).unsqueeze(0)
        attn._get_rel_pos_bias = lambda: bias  # an instance attribute shadows timm's method for this call only
        try:
            return block(tokens.x, **tokens.block_kwargs)
        finally:
            del attn._get_rel_pos_bias


REFUSALS = {
    "VisionTransformerSAM": (
        "SAM's image encoder attends within 14x14 windows over an NHWC grid with relative positions sized for "
        "one input, and ends in its own neck; it is not a plain token ViT"
    ),
}


def family_for(vit: nn.Module, name: str, frozen_dtype: torch.dtype = torch.float32) -> ViTFamily:
    """The family runner for a timm model, or a ValueError that says why the model cannot be adapted.

    Args:
        vit: the timm model.
        name: its timm name (for the message).
        frozen_dtype: the dtype its weight matrices are kept in.
    """
    from timm.models.beit import Beit
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    for cls, family in ((VisionTransformer, VisionTransformerFamily), (Eva, EvaFamily), (Beit, BeitFamily)):
        if isinstance(vit, cls):
            return family(vit, frozen_dtype)
    cls_name = type(vit).__name__
    reason = REFUSALS.get(cls_name, f"its class {cls_name} is not one of the plain-ViT families")
    raise ValueError(
        f"model.backbone.name={name!r} cannot be adapted: {reason}. Supported: timm VisionTransformer models "
        "(vit_*, deit*, *_dinov2, CLIP, SigLIP, flexivit_*), Eva models (eva02_*, vit_pe_*, *_rope_*, *_dinov3*) and "
        "Beit (beit_*, beitv2_*)."
    )
