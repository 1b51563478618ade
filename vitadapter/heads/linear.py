"""Linear probe for segmentation: BatchNorm and one 1x1 conv on frozen features (DINOv2's / DINOv3's `BNHead`).

Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", 2023 (linear semantic segmentation:
a linear layer on the patch tokens, logits upsampled to the label), as its mmseg head does it
(dinov2/eval/segmentation/models/decode_heads/linear_head.py): the inputs resized to the first one's size and
concatenated (mmseg's "resize_concat"), SyncBatchNorm, then mmseg's classifier (dropout + 1x1 conv).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from vitadapter.heads.conv_module import SegClassifier, resize_to, select_levels


def concat_levels(
    pyramid: Mapping[str, Tensor], keys: Sequence[str] | None, align_corners: bool = False, scale: int = 1
) -> Tensor:
    """mmseg's "resize_concat": the levels bilinearly resized to the first one's size × `scale`, concatenated.

    Args:
        pyramid: the neck's levels, finest first.
        keys: the levels to read; None: the finest level only.
        align_corners: passed to the bilinear resize.
        scale: integer upsampling of the first level's size (DINOv2's linear depth head: 4).

    Returns:
        N × (len(keys) · C) × (scale · h_0) × (scale · w_0).
    """
    features = select_levels(pyramid, keys if keys is not None else [next(iter(pyramid))])
    size = [scale * n for n in features[0].shape[-2:]]
    return torch.cat([resize_to(feature, size, align_corners) for feature in features], dim=1)


class LinearHead(nn.Module):
    """BatchNorm + dropout + 1x1 conv on the given levels, logits at the first level's resolution.

    The task upsamples the logits to the label. With the tokens neck (model/neck=tokens) the one level already
    concatenates the tapped blocks (DINOv2's "+ms": 4 blocks); several `in_keys` concatenate pyramid levels.

    Args:
        in_channels: channels of every level read.
        num_classes: number of classes K.
        in_keys: the levels to read, the first setting the output size; None: the finest level only.
        dropout: Dropout2d before the conv (DINOv2's linear configs: 0).
        align_corners: used when resizing levels to the first one.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        in_keys: Sequence[str] | None = None,
        dropout: float = 0.0,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if in_keys is not None and len(in_keys) < 1:
            raise ValueError("in_keys must name at least one pyramid level (or be null: the finest level)")
        self.num_classes = num_classes
        self.in_keys = tuple(in_keys) if in_keys is not None else None
        self.align_corners = align_corners
        channels = in_channels * (len(self.in_keys) if self.in_keys else 1)
        self.bn = nn.BatchNorm2d(channels)
        self.classifier = SegClassifier(channels, num_classes, dropout)

    def forward(self, pyramid: Mapping[str, Tensor]) -> Tensor:
        """Classify every cell.

        Args:
            pyramid: `{key: N × in_channels × h_k × w_k}` containing `in_keys`.

        Returns:
            N × num_classes × h_0 × w_0 logits (the first level's size).
        """
        return self.classifier(self.bn(concat_levels(pyramid, self.in_keys, self.align_corners)))
