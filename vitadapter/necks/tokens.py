"""No spatial module: the tapped blocks' tokens as one map at the patch stride, for the linear probes.

DINOv2 (Oquab et al., 2023) and DINOv3 (Siméoni et al., 2025) score frozen features with linear heads on the
patch tokens of the last block or of the last 4 blocks, concatenated; each block's tokens optionally after the
ViT's final norm (DINOv2's `get_intermediate_layers(norm=True)`) and with its class token broadcast over the patch
grid and concatenated after them (DINOv2's linear depth head). Nothing here is trained.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
from torch import Tensor, nn

from vitadapter.backbone.families import Tokens
from vitadapter.necks.base import PyramidModule, level_name


class TokensNeck(PyramidModule):
    """Base class of spatial modules that read the tapped token states whole (class token included).

    The encoder builds such a neck with `num_taps` (the number of model.backbone.out_indices) and
    `has_class_token` besides `in_channels`, `patch_size` and `depth`, and calls it with the token state after
    each tapped block and the ViT's final norm.
    """

    def forward(self, taps: list[Tokens], norm: nn.Module, image: Tensor) -> OrderedDict[str, Tensor]:
        """Builds the pyramid.

        Args:
            taps: the token state after each tapped block, shallowest first.
            norm: the ViT's final norm (timm's `norm`; Identity in models that normalise only a pooled feature).
            image: the normalised input image B×3×H×W.

        Returns:
            {"s<stride>": B×out_channels×ceil(H/stride)×ceil(W/stride)} per stride.
        """
        raise NotImplementedError


class TappedTokens(TokensNeck):
    """The taps' patch maps (and class tokens) concatenated over channels: one level at stride `patch_size`.

    Args:
        in_channels: ViT width D.
        patch_size: ViT patch size (the level's stride).
        num_taps: tapped blocks T (model.backbone.out_indices: [-1] for the last block, 4 for "last 4").
        has_class_token: whether the ViT has a class token (set by the encoder).
        final_norm: pass each tap through the ViT's final norm first, as DINOv2's linear probes do.
        class_token: concatenate each tap's class token, broadcast over the grid, after its patch map.
        depth: the ViT blocks the encoder runs (unused).

    Attributes:
        out_channels: T × D, times 2 with `class_token`.
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: int,
        num_taps: int,
        has_class_token: bool = True,
        final_norm: bool = True,
        class_token: bool = False,
        depth: int | None = None,
    ) -> None:
        if class_token and not has_class_token:
            raise ValueError("model.neck.class_token=true reads each tapped block's class token, but this backbone "
                             "has none (a timm model built with class_token=False); set model.neck.class_token=false")
        if num_taps < 1:
            raise ValueError(f"the tokens neck needs at least one tapped block, got num_taps={num_taps}")
        super().__init__(num_taps * in_channels * (2 if class_token else 1), (patch_size,))
        self.num_taps = num_taps
        self.final_norm = final_norm
        self.class_token = class_token

    def forward(self, taps: list[Tokens], norm: nn.Module, image: Tensor) -> OrderedDict[str, Tensor]:
        if len(taps) != self.num_taps:
            raise ValueError(f"the tokens neck was built for {self.num_taps} taps, got {len(taps)}")
        parts = []
        for tap in taps:
            if self.final_norm:
                tap = dataclasses.replace(tap, x=norm(tap.x))
            patches = tap.patch_map()
            parts.append(patches)
            if self.class_token:
                # the class token is the first prefix token in every timm family (registers and prompts follow)
                parts.append(tap.x[:, 0, :, None, None].expand_as(patches))
        return OrderedDict([(level_name(self.strides[0]), torch.cat(parts, dim=1))])
