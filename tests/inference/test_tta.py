"""Test-time augmentation: identity at one scale, flip handling, multi-scale averaging."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vitadapter.inference import segment, tta_inference


def symmetric_blur(x: Tensor) -> Tensor:
    """A flip-equivariant forward: a symmetric 3x3 box filter, then a channel mix."""
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return torch.cat([blurred, -blurred.sum(1, keepdim=True)], dim=1)


def position_dependent(x: Tensor) -> Tensor:
    """Not flip-equivariant: adds a left-to-right ramp to the logits."""
    ramp = torch.linspace(0, 3, x.shape[-1]).expand_as(x[:, :1])
    return torch.cat([x[:, :1] + ramp, x[:, 1:]], dim=1)


def test_single_scale_equals_softmax_of_plain() -> None:
    image = torch.randn(2, 3, 20, 16)
    for mode in ("whole", "slide"):
        plain = segment(symmetric_blur, image, mode, crop_size=12, stride=8)
        resized = F.interpolate(plain, size=(25, 19), mode="bilinear", align_corners=False)
        expected = F.softmax(resized, dim=1)
        out = tta_inference(symmetric_blur, image, (25, 19), mode, crop_size=12, stride=8)
        assert torch.equal(out, expected)
    same_size = tta_inference(symmetric_blur, image, (20, 16))
    assert torch.equal(same_size, F.softmax(segment(symmetric_blur, image), dim=1))


def test_flip_is_invisible_for_equivariant_forward() -> None:
    image = torch.randn(1, 3, 18, 14)
    plain = tta_inference(symmetric_blur, image, (18, 14))
    flipped = tta_inference(symmetric_blur, image, (18, 14), flip=True)
    torch.testing.assert_close(flipped, plain)


def test_flip_averages_the_unflipped_logits() -> None:
    image = torch.randn(1, 3, 10, 12)
    plain = F.softmax(position_dependent(image), dim=1)
    mirrored = F.softmax(position_dependent(image.flip(-1)).flip(-1), dim=1)
    out = tta_inference(position_dependent, image, (10, 12), flip=True)
    torch.testing.assert_close(out, (plain + mirrored) / 2)
    assert not torch.allclose(out, plain)


def test_multi_scale_probabilities() -> None:
    image = torch.randn(2, 3, 16, 12)
    out = tta_inference(symmetric_blur, image, (32, 24), scales=(0.5, 1.0, 1.5), flip=True)
    assert out.shape == (2, 4, 32, 24)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 32, 24))
    small = symmetric_blur(F.interpolate(image, size=(8, 6), mode="bilinear"))
    half = F.softmax(F.interpolate(small, size=(32, 24), mode="bilinear"), dim=1)
    one = tta_inference(symmetric_blur, image, (32, 24), scales=(1.0,))
    onehalf = tta_inference(symmetric_blur, image, (32, 24), scales=(1.5,))
    torch.testing.assert_close(out, (half + one + onehalf) / 3, atol=1e-5, rtol=1e-5)
