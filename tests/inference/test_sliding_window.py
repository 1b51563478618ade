"""Whole-image vs sliding-window inference: equivalence, window placement, batching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from vitadapter.inference import segment, slide_inference, sliding_windows, whole_inference


def pixelwise(x: Tensor) -> Tensor:
    """Logits that depend only on the pixel itself, so cropping cannot change them."""
    return torch.cat([x, x.square(), x.sum(1, keepdim=True)], dim=1)


def stride4(x: Tensor) -> Tensor:
    """Logits at a quarter of the input resolution, like a real head."""
    return F.avg_pool2d(pixelwise(x), 4, ceil_mode=True)


class Recorder:
    """Wraps a forward function and records the shape of every call."""

    def __init__(self, fn: object) -> None:
        self.fn = fn
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, x: Tensor) -> Tensor:
        self.shapes.append(tuple(x.shape))
        return self.fn(x)  # type: ignore[operator]


def test_windows_on_non_divisible_size() -> None:
    # 70x50 image, crop 32, stride 21: 3 rows x 2 columns, last ones shifted back to the border.
    windows = sliding_windows(70, 50, 32, 21)
    assert windows == [
        (0, 32, 0, 32), (0, 32, 18, 50),
        (21, 53, 0, 32), (21, 53, 18, 50),
        (38, 70, 0, 32), (38, 70, 18, 50),
    ]  # fmt: skip
    coverage = torch.zeros(70, 50, dtype=torch.int64)
    for y1, y2, x1, x2 in windows:
        coverage[y1:y2, x1:x2] += 1
    assert bool((coverage >= 1).all())
    assert sliding_windows(70, 50, (32, 40), (21, 30)) == [
        (0, 32, 0, 40), (0, 32, 10, 50),
        (21, 53, 0, 40), (21, 53, 10, 50),
        (38, 70, 0, 40), (38, 70, 10, 50),
    ]  # fmt: skip


def test_slide_equals_whole_for_pixelwise_forward() -> None:
    image = torch.randn(2, 3, 70, 50)
    rec = Recorder(pixelwise)
    slid = slide_inference(rec, image, crop_size=32, stride=21, window_batch=4)
    torch.testing.assert_close(slid, whole_inference(pixelwise, image))
    assert slid.shape == (2, 7, 70, 50)
    # 6 windows x batch 2, in chunks of 4 windows: 2 forward calls (8 + 4 crops).
    assert rec.shapes == [(8, 3, 32, 32), (4, 3, 32, 32)]


def test_window_batch_does_not_change_result() -> None:
    image = torch.randn(1, 3, 45, 38)
    one = slide_inference(stride4, image, 24, 16, window_batch=1)
    torch.testing.assert_close(slide_inference(stride4, image, 24, 16, window_batch=None), one)
    torch.testing.assert_close(segment(stride4, image, "slide", 24, 16), one)
    assert one.shape == (1, 7, 45, 38)


def test_image_smaller_than_crop_is_one_window() -> None:
    image = torch.randn(1, 3, 20, 24)
    rec = Recorder(stride4)
    out = slide_inference(rec, image, crop_size=32, stride=21)
    assert rec.shapes == [(1, 3, 20, 24)]
    torch.testing.assert_close(out, whole_inference(stride4, image))


def test_whole_resizes_to_image_size() -> None:
    image = torch.randn(2, 3, 17, 13)
    out = segment(stride4, image, mode="whole")
    expected = F.interpolate(stride4(image), size=(17, 13), mode="bilinear", align_corners=False)
    assert torch.equal(out, expected)


def test_bad_arguments() -> None:
    image = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="mode"):
        segment(pixelwise, image, mode="sliding")
    with pytest.raises(ValueError, match="gaps"):
        slide_inference(pixelwise, image, crop_size=4, stride=5)
    with pytest.raises(ValueError, match="B x C x H x W"):
        whole_inference(pixelwise, image[0])
