"""The backbone that torchvision detectors receive: the encoder (frozen ViT + method + neck) + FPN (p2-p6).

Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017 (torchvision's
`FeaturePyramidNetwork` with `LastLevelMaxPool` for p6), on top of a plain-ViT pyramid as in Li et al.,
"Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet), ECCV 2022.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from vitadapter.encoder import Encoder


def pyramid_level(stride: int) -> str:
    """Detection-style name of the pyramid level at `stride`, e.g. 'p2' for stride 4."""
    level = math.log2(stride)
    if not level.is_integer():
        raise ValueError(f"detection pyramid strides must be powers of two, got {stride}")
    return f"p{int(level)}"


class DetectionBackbone(nn.Module):
    """Encoder pyramid (strides 4..32) -> FPN -> {"p2", ..., "p6"}, the torchvision backbone API.

    Args:
        encoder: the encoder (strides 4, 8, 16, 32).
        fpn_channels: channels of every output level.

    Attributes:
        encoder: the encoder (reachable for checkpointing and its normalisation).
        out_channels: channels of every level (torchvision reads this).
        strides: stride of every output level, finest first (4, 8, 16, 32, 64).
        level_names: the output keys, finest first ("p2", ..., "p6").
    """

    def __init__(self, encoder: Encoder, fpn_channels: int = 256) -> None:
        super().__init__()
        if tuple(encoder.strides) != (4, 8, 16, 32):
            raise ValueError(
                f"detection needs a neck with strides (4, 8, 16, 32), got model.neck.strides={encoder.strides}"
            )
        self.encoder = encoder
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=[encoder.out_channels] * len(encoder.strides),
            out_channels=fpn_channels,
            extra_blocks=LastLevelMaxPool(),
        )
        self.out_channels = fpn_channels
        self.strides: tuple[int, ...] = (*encoder.strides, 2 * encoder.strides[-1])
        self.level_names: tuple[str, ...] = tuple(pyramid_level(s) for s in self.strides)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """Runs the pyramid on a padded, normalised batch.

        Args:
            images: B×3×H×W.

        Returns:
            {"p2": B×C×H/4×W/4, ..., "p6": B×C×H/64×W/64} (sizes rounded up), C = `out_channels`.
        """
        pyramid = self.encoder(images)
        inputs = OrderedDict((name, x) for name, x in zip(self.level_names, pyramid.values()))
        # LastLevelMaxPool appends its level as "pool"; rename every level by stride instead
        return OrderedDict(zip(self.level_names, self.fpn(inputs).values()))
