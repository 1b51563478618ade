"""FCN head, used as the auxiliary head next to UPerNet.

Long et al., "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015. Configured as
mmsegmentation's auxiliary ``FCNHead`` in its UPerNet recipes: 3x3 conv-norm-ReLU stack on one
pyramid level (stride 16 by default), no input concatenation, then the classifier. Its loss is
usually weighted 0.4.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from vitadapter.heads.conv_module import ConvNormAct, SegClassifier, select_levels


class FCNHead(nn.Module):
    """Conv stack + classifier on a single pyramid level.

    Args:
        in_channels: Channels of the selected level.
        num_classes: Number of classes K.
        channels: Width of the convs.
        num_convs: Number of 3x3 conv-norm-ReLU layers; 0 classifies the input directly.
        in_key: Pyramid level to read.
        dropout: Dropout2d before the classifier.
        norm: ``"bn"``, ``"gn"`` or ``"none"``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        num_convs: int = 1,
        in_key: str = "s16",
        dropout: float = 0.1,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        if num_convs < 0:
            raise ValueError(f"num_convs must be >= 0, got {num_convs}")
        self.num_classes = num_classes
        self.in_key = in_key
        self.convs = nn.Sequential(
            *(
                ConvNormAct(in_channels if i == 0 else channels, channels, 3, norm=norm)
                for i in range(num_convs)
            )
        )
        out_channels = channels if num_convs > 0 else in_channels
        self.classifier = SegClassifier(out_channels, num_classes, dropout)

    def forward(self, pyramid: Mapping[str, Tensor]) -> Tensor:
        """Classify one level.

        Args:
            pyramid: ``{key: N x C x h x w}`` containing ``in_key``.

        Returns:
            N x num_classes x h x w logits at ``in_key``'s resolution.
        """
        (x,) = select_levels(pyramid, [self.in_key])
        return self.classifier(self.convs(x))
