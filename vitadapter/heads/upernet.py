"""UPerNet decode head.

Xiao et al., "Unified Perceptual Parsing for Scene Understanding", ECCV 2018. Layout as in
mmsegmentation's ``UPerHead``: a pyramid pooling module (PSPNet) on the coarsest level, an FPN
top-down path over the others, all levels upsampled to the finest and fused by a 3x3 conv.

With `grad_checkpointing` each stage (lateral convs, pyramid pooling, FPN convs, the fusion with the
classifier) keeps only its input and runs again in the backward pass: at stride 4 the head's maps are the
largest activations of a frozen-ViT model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from vitadapter.heads.conv_module import ConvNormAct, SegClassifier, resize_to, select_levels
from vitadapter.utils.checkpointing import checkpointed, checkpointing_applies

DEFAULT_KEYS = ("s4", "s8", "s16", "s32")


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: pooled context at several grid sizes, concatenated and fused.

    Args:
        in_channels: Channels of the input map.
        channels: Channels of each pooled branch and of the output.
        pool_scales: Output grid sizes of the adaptive average pools.
        norm: Normalisation of the convs (see :class:`ConvNormAct`).
        align_corners: Used when upsampling the pooled maps.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        pool_scales: Sequence[int],
        norm: str,
        align_corners: bool,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvNormAct(in_channels, channels, 1, norm=norm))
            for s in pool_scales
        )
        fused_channels = in_channels + len(pool_scales) * channels
        self.bottleneck = ConvNormAct(fused_channels, channels, 3, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        """Fuse ``x`` with its pooled context.

        Args:
            x: N x in_channels x h x w.

        Returns:
            N x channels x h x w.
        """
        size = x.shape[-2:]
        pooled = [resize_to(b(x), size, self.align_corners) for b in self.branches]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UPerNetHead(nn.Module):
    """UPerNet head: PPM + FPN over the neck's pyramid, logits at the finest level's resolution.

    Args:
        in_channels: Channels of every pyramid level.
        num_classes: Number of classes K.
        channels: Internal width.
        pool_scales: Grid sizes of the pyramid pooling module.
        dropout: Dropout2d before the classifier.
        norm: ``"bn"``, ``"gn"`` or ``"none"``.
        align_corners: Used for all bilinear upsampling.
        in_keys: Pyramid keys to use, finest first.
        grad_checkpointing: Recompute each stage in the backward pass instead of keeping its activations
            (training only; outputs, gradients and BatchNorm statistics unchanged).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        norm: str = "bn",
        align_corners: bool = False,
        *,
        in_keys: Sequence[str] = DEFAULT_KEYS,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if len(in_keys) < 1:
            raise ValueError("in_keys must name at least one pyramid level")
        self.num_classes = num_classes
        self.in_keys = tuple(in_keys)
        self.align_corners = align_corners
        self.grad_checkpointing = grad_checkpointing
        n = len(self.in_keys)
        self.ppm = PyramidPooling(in_channels, channels, pool_scales, norm, align_corners)
        self.lateral_convs = nn.ModuleList(
            ConvNormAct(in_channels, channels, 1, norm=norm) for _ in range(n - 1)
        )
        self.fpn_convs = nn.ModuleList(
            ConvNormAct(channels, channels, 3, norm=norm) for _ in range(n - 1)
        )
        self.fuse = ConvNormAct(n * channels, channels, 3, norm=norm)
        self.classifier = SegClassifier(channels, num_classes, dropout)

    def forward(self, pyramid: Mapping[str, Tensor]) -> Tensor:
        """Decode the pyramid.

        Args:
            pyramid: ``{key: N x in_channels x h_k x w_k}`` containing ``in_keys``.

        Returns:
            N x num_classes x h_0 x w_0 logits (size of the finest level).
        """
        feats = select_levels(pyramid, self.in_keys)
        laterals = [self._stage(conv, f) for conv, f in zip(self.lateral_convs, feats[:-1])]
        laterals.append(self._stage(self.ppm, feats[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            coarse = resize_to(laterals[i], laterals[i - 1].shape[-2:], self.align_corners)
            laterals[i - 1] = laterals[i - 1] + coarse
        outs = [self._stage(conv, lat) for conv, lat in zip(self.fpn_convs, laterals[:-1])]
        outs.append(laterals[-1])
        return self._stage(self._fuse_and_classify, *outs)

    def _fuse_and_classify(self, *outs: Tensor) -> Tensor:
        # resized inside the stage: the concatenation of every level at stride 4 is the head's largest map
        size = outs[0].shape[-2:]
        resized = [outs[0]] + [resize_to(o, size, self.align_corners) for o in outs[1:]]
        return self.classifier(self.fuse(torch.cat(resized, dim=1)))

    def _stage(self, function: Callable[..., Tensor], *args: Tensor) -> Tensor:
        if checkpointing_applies(self, self.grad_checkpointing):
            return checkpointed(function, *args, state=self)
        return function(*args)
