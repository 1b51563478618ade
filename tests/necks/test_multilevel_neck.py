"""The spatial module: strides 4..32 for patch 8, 14 and 16 and any input size."""

import math

import pytest
import torch
from timm.layers import LayerNorm2d

from vitadapter.necks import MultiLevelNeck


@pytest.mark.parametrize("patch", [8, 14, 16])
@pytest.mark.parametrize("size", [(64, 64), (70, 98), (45, 31)])
@pytest.mark.parametrize("source", ["multi", "last"])
def test_pyramid_sizes_and_channels(patch: int, size: tuple[int, int], source: str) -> None:
    neck = MultiLevelNeck(in_channels=24, patch_size=patch, out_channels=16, source=source)
    grid = [math.ceil(s / patch) for s in size]
    taps = [torch.randn(2, 24, *grid) for _ in range(4)]
    pyramid = neck(taps, torch.randn(2, 3, *size))
    assert list(pyramid) == ["s4", "s8", "s16", "s32"]
    for stride, level in zip(neck.strides, pyramid.values()):
        assert level.shape == (2, 16, math.ceil(size[0] / stride), math.ceil(size[1] / stride))


def test_multi_source_reads_each_tap_and_last_source_only_the_last() -> None:
    image = torch.randn(1, 3, 32, 32)
    for source, used in (("multi", {0, 1, 2, 3}), ("last", {3})):
        neck = MultiLevelNeck(in_channels=8, patch_size=16, out_channels=8, source=source)
        taps = [torch.randn(1, 8, 2, 2, requires_grad=True) for _ in range(4)]
        sum(level.sum() for level in neck(taps, image).values()).backward()
        assert {i for i, t in enumerate(taps) if t.grad is not None} == used


@pytest.mark.parametrize(("norm", "norm_type"), [("ln", LayerNorm2d), ("bn", torch.nn.BatchNorm2d)])
def test_norm_choice(norm: str, norm_type: type) -> None:
    neck = MultiLevelNeck(in_channels=8, patch_size=16, out_channels=8, norm=norm)
    norms = [m for m in neck.modules() if isinstance(m, (LayerNorm2d, torch.nn.BatchNorm2d))]
    assert norms and all(type(m) is norm_type for m in norms)
    pyramid = neck([torch.randn(2, 8, 2, 2)] * 4, torch.randn(2, 3, 32, 32))
    assert pyramid["s4"].shape == (2, 8, 8, 8)


def test_bad_neck_arguments() -> None:
    with pytest.raises(ValueError, match="source"):
        MultiLevelNeck(8, 16, source="middle")
    with pytest.raises(ValueError, match="model.neck.norm"):
        MultiLevelNeck(8, 16, norm="gn")
    with pytest.raises(ValueError, match="increasing"):
        MultiLevelNeck(8, 16, strides=(8, 4))
    neck = MultiLevelNeck(8, 16)
    with pytest.raises(ValueError, match="4 taps"):
        neck([torch.randn(1, 8, 2, 2)] * 3, torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("patch", [14, 16])
def test_patch_padding_is_cropped_not_squeezed(patch: int) -> None:
    """A 60 px input fills a grid that covers 64 (patch 16) or 70 (patch 14) px: the padding is cut off."""
    neck = MultiLevelNeck(in_channels=8, patch_size=patch, out_channels=8).eval()
    grid = math.ceil(60 / patch)
    taps = [torch.randn(1, 8, grid, grid) for _ in range(4)]
    with torch.no_grad():
        cropped = neck(taps, torch.randn(1, 3, 60, 60))
        padded = neck(taps, torch.randn(1, 3, grid * patch, grid * patch))
    for stride in (4, 8):
        kept = math.ceil(60 / stride)
        ours, whole = cropped[f"s{stride}"], padded[f"s{stride}"]
        assert ours.shape[-1] == kept
        # away from the cut (the 3x3 convolution reads one pixel across it) both see the same features
        torch.testing.assert_close(ours[..., : kept - 1, : kept - 1], whole[..., : kept - 1, : kept - 1])
