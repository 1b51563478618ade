"""ViT-Adapter's spatial prior module: a small convolutional stem that sees the image itself.

Chen et al., "Vision Transformer Adapter for Dense Predictions", ICLR 2023, section 3.2: a ResNet-style
stem to stride 4, then strided 3×3 convolutions to strides 8, 16 and 32, each level projected to the
ViT width by a 1×1 convolution. Every 3×3 convolution is bias-free, followed by BatchNorm and ReLU.
"""

from __future__ import annotations

from torch import Tensor, nn


SPATIAL_PRIOR_STRIDES = (4, 8, 16, 32)


class SpatialPriorModule(nn.Module):
    """Image -> four maps of width `dim` at strides 4, 8, 16 and 32.

    Args:
        dim: output width (the ViT's).
        channels: the stem's width; the stride-8 level has 2× and the stride-16 and -32 levels 4×.

    Output sizes are ceil(H/s) × ceil(W/s) for any input size (every strided layer pads by one).
    """

    def __init__(self, dim: int, channels: int = 64) -> None:
        super().__init__()

        def conv(cin: int, cout: int, stride: int) -> nn.Sequential:
            # plain BatchNorm2d (not timm's fused BatchNormAct2d): torch's SyncBN conversion under
            # trainer=ddp replaces BatchNorm modules whole and would drop a fused activation
            return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.stem = nn.Sequential(
            conv(3, channels, 2),
            conv(channels, channels, 1),
            conv(channels, channels, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        widths = (channels, 2 * channels, 4 * channels, 4 * channels)
        self.downsamples = nn.ModuleList(conv(cin, cout, 2) for cin, cout in zip(widths[:-1], widths[1:]))
        self.projections = nn.ModuleList(nn.Conv2d(width, dim, kernel_size=1) for width in widths)

    def forward(self, image: Tensor) -> list[Tensor]:
        """B×3×H×W -> [B×dim×ceil(H/s)×ceil(W/s) for s in 4, 8, 16, 32]."""
        x = self.stem(image)
        levels = [x]
        for downsample in self.downsamples:
            x = downsample(x)
            levels.append(x)
        return [project(level) for project, level in zip(self.projections, levels)]
