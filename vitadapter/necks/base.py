"""The neck ("spatial module") interface: ViT taps in, an ordered multi-scale pyramid out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn


def level_name(stride: int) -> str:
    """Key of a pyramid level, e.g. 's4' for stride 4."""
    return f"s{stride}"


class Neck(nn.Module):
    """Base class of spatial modules.

    Subclasses map the tapped ViT maps (and, for spatial-prior necks such as ViT-Adapter's, the
    image itself) to NCHW maps at `strides`, all with `out_channels` channels, finest first.

    Attributes:
        out_channels: channels of every pyramid level.
        strides: the pyramid's strides, finest first.
    """

    out_channels: int
    strides: tuple[int, ...]

    def __init__(self, out_channels: int, strides: Sequence[int]) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.strides = tuple(int(s) for s in strides)
        if list(self.strides) != sorted(set(self.strides)):
            raise ValueError(f"neck strides must be distinct and increasing, got {self.strides}")

    def forward(self, features: list[Tensor], image: Tensor) -> OrderedDict[str, Tensor]:
        """Builds the pyramid.

        Args:
            features: the backbone's tapped maps, B×C×h×w each, shallowest first.
            image: the normalised input image B×3×H×W (sets the output sizes; spatial-prior
                necks also read it).

        Returns:
            {"s4": ..., "s8": ..., ...}: B×out_channels×ceil(H/s)×ceil(W/s) per stride s.
        """
        raise NotImplementedError
