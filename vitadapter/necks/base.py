"""The neck ("spatial module") interface: ViT taps in, an ordered multi-scale pyramid out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from vitadapter.backbone.families import Tokens


def level_name(stride: int) -> str:
    """Key of a pyramid level, e.g. 's4' for stride 4."""
    return f"s{stride}"


def ceil_div(n: int, d: int) -> int:
    """ceil(n / d) in integer arithmetic, which keeps a symbolic size exact under torch.export (ONNX export)."""
    return -(-n // d)


def fit_to_level(feature: Tensor, extent: tuple[int, int], stride: int, size: tuple[int, int]) -> Tensor:
    """Resizes a map that covers `extent` pixels to cells of `stride` and crops it to `size`.

    A ViT map covers the image padded to whole patches (`extent` = grid × patch): the whole map is
    scaled bilinearly to that extent at `stride` (nothing when it is already that size), then the
    padding is cropped to `size` (ceil(H/stride) × ceil(W/stride)), so cells stay aligned with the
    image for any patch size (14 included).
    """
    padded = tuple(ceil_div(n, stride) for n in extent)
    if tuple(feature.shape[-2:]) != padded:
        feature = F.interpolate(feature, size=padded, mode="bilinear", align_corners=False)
    return feature[..., : size[0], : size[1]]


class PyramidModule(nn.Module):
    """What every spatial module declares: the channels and strides of the pyramid it returns.

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


class Neck(PyramidModule):
    """Base class of spatial modules that read the ViT's tapped maps after it has run.

    Subclasses map the tapped ViT maps (and the image, for its size) to NCHW maps at `strides`, all
    with `out_channels` channels, finest first.
    """

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


RunBlocks = Callable[[Tokens, range], Tokens]


class InterleavedNeck(PyramidModule):
    """Base class of spatial modules that run between groups of ViT blocks (ViT-Adapter).

    The encoder hands over the embedded tokens and a function that runs a range of blocks (with the
    PEFT method's hooks); the neck decides what happens before and after each range.
    """

    def forward(self, image: Tensor, tokens: Tokens, run_blocks: RunBlocks) -> OrderedDict[str, Tensor]:
        """Builds the pyramid.

        Args:
            image: the normalised input image B×3×H×W.
            tokens: the ViT's tokens after the embedding (before block 0).
            run_blocks: `run_blocks(tokens, range(i, j))` runs blocks i..j-1 and returns the tokens after them.

        Returns:
            {"s4": ..., "s8": ..., ...}: B×out_channels×ceil(H/s)×ceil(W/s) per stride s.
        """
        raise NotImplementedError
