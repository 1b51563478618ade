"""Decode heads: output shapes on square and odd pyramids, gradients, building blocks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from vitadapter.heads import ConvNormAct, FCNHead, SemanticFPNHead, UPerNetHead

IN_CH, K = 16, 5

HEADS: dict[str, Callable[[], nn.Module]] = {
    "upernet": lambda: UPerNetHead(IN_CH, K, channels=32),
    "upernet_gn": lambda: UPerNetHead(IN_CH, K, channels=24, norm="gn", pool_scales=(1, 2)),
    "fpn": lambda: SemanticFPNHead(IN_CH, K, channels=16),
    "fcn": lambda: FCNHead(IN_CH, K, channels=16, num_convs=2),
}
# Square sizes, and odd sizes where the coarser levels are not exactly half the finer ones.
SIZES = {
    "square": {"s4": (16, 16), "s8": (8, 8), "s16": (4, 4), "s32": (2, 2)},
    "odd": {"s4": (17, 13), "s8": (9, 7), "s16": (5, 4), "s32": (3, 2)},
}


def make_pyramid(sizes: dict[str, tuple[int, int]], batch: int = 2) -> dict[str, Tensor]:
    return {k: torch.randn(batch, IN_CH, h, w, requires_grad=True) for k, (h, w) in sizes.items()}


@pytest.mark.parametrize("size_name", sorted(SIZES))
@pytest.mark.parametrize("head_name", sorted(HEADS))
def test_output_shape_and_gradients(head_name: str, size_name: str) -> None:
    torch.manual_seed(0)
    head = HEADS[head_name]().train()
    pyramid = make_pyramid(SIZES[size_name])
    out = head(pyramid)
    out_key = "s16" if head_name == "fcn" else "s4"
    assert out.shape == (2, K, *SIZES[size_name][out_key])
    assert head.num_classes == K

    out.square().mean().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    used = {"s16"} if head_name == "fcn" else set(pyramid)
    for key in used:
        assert pyramid[key].grad is not None and pyramid[key].grad.abs().sum() > 0, key

    head.eval()
    with torch.no_grad():
        assert torch.equal(head(pyramid), head(pyramid))  # no dropout at eval


@pytest.mark.parametrize("head_name", sorted(HEADS))
def test_classifier_init(head_name: str) -> None:
    torch.manual_seed(0)
    conv = HEADS[head_name]().classifier[-1]
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == K
    assert torch.count_nonzero(conv.bias) == 0
    assert 0.002 < conv.weight.std().item() < 0.02


def test_missing_level_is_a_clear_error() -> None:
    pyramid = make_pyramid(SIZES["square"])
    del pyramid["s32"]
    with pytest.raises(KeyError, match="s32"):
        UPerNetHead(IN_CH, K, channels=16)(pyramid)


def test_fcn_on_another_level() -> None:
    head = FCNHead(IN_CH, K, channels=8, num_convs=0, in_key="s8", dropout=0.0).eval()
    out = head(make_pyramid(SIZES["odd"], batch=1))
    assert out.shape == (1, K, 9, 7)


@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_conv_norm_act(norm: str) -> None:
    block = ConvNormAct(4, 24, 3, norm=norm)
    conv = block[0]
    assert isinstance(conv, nn.Conv2d) and conv.padding == (1, 1)
    assert (conv.bias is None) == (norm != "none")
    assert isinstance(block[-1], nn.ReLU)
    if norm == "gn":
        assert block[1].num_groups == 8  # gcd(32, 24)
    assert block(torch.randn(2, 4, 7, 5)).shape == (2, 24, 7, 5)
    assert len(ConvNormAct(4, 8, 1, norm=norm, act=False)) == (1 if norm == "none" else 2)


def test_unknown_norm() -> None:
    with pytest.raises(ValueError, match="norm"):
        ConvNormAct(4, 8, 3, norm="ln")
