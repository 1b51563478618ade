"""The linear depth probe: the bins mixing by hand and as the toolbox's einsum, ranges, shapes and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor

from tests.helpers import CONFIGS
from vitadapter.heads import LinearDepthHead

IN_CH, MIN, MAX = 6, 0.001, 10.0
ONE_LEVEL = {"s16": (5, 7)}
FOUR_LEVELS = {"s4": (17, 13), "s8": (9, 7), "s16": (5, 4), "s32": (3, 2)}


def make_pyramid(sizes: dict[str, tuple[int, int]], seed: int = 0, scale: float = 1.0) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: (scale * torch.randn(2, IN_CH, h, w, generator=generator)).requires_grad_()
            for k, (h, w) in sizes.items()}


def _constant_scores(head: LinearDepthHead, scores: list[float]) -> None:
    with torch.no_grad():
        head.conv_depth.weight.zero_()
        head.conv_depth.bias.copy_(torch.tensor(scores))


@pytest.mark.parametrize("norm", ["linear", "softmax", "sigmoid"])
def test_bins_mixing_by_hand(norm: str) -> None:
    head = LinearDepthHead(IN_CH, 1.0, 4.0, n_bins=4, norm=norm)  # bin centres 1, 2, 3, 4
    scores = [-1.0, 0.9, 1.9, 0.0]
    _constant_scores(head, scores)
    if norm == "linear":  # relu + 0.1 -> 0.1, 1, 2, 0.1
        weights = [0.1, 1.0, 2.0, 0.1]
    elif norm == "softmax":
        weights = [math.exp(s) for s in scores]
    else:
        weights = [1 / (1 + math.exp(-s)) for s in scores]
    expected = sum(w * c for w, c in zip(weights, (1, 2, 3, 4))) / sum(weights)
    out = head(make_pyramid(ONE_LEVEL))
    assert out.shape == (2, 1, 20, 28)
    assert torch.allclose(out, torch.full_like(out, expected), rtol=1e-6)
    if norm == "linear":
        assert expected == pytest.approx(8.5 / 3.2)


def test_equals_the_toolboxs_depth_pred() -> None:
    torch.manual_seed(0)
    head = LinearDepthHead(IN_CH, MIN, MAX, n_bins=16, upsample=2)
    pyramid = make_pyramid(ONE_LEVEL)
    features = F.interpolate(pyramid["s16"], size=(10, 14), mode="bilinear", align_corners=False)
    probabilities = torch.relu(head.conv_depth(features)) + 0.1
    probabilities = probabilities / probabilities.sum(dim=1, keepdim=True)
    expected = torch.einsum("ikmn,k->imn", probabilities, torch.linspace(MIN, MAX, 16)).unsqueeze(1)
    assert torch.allclose(head(pyramid), expected, atol=1e-5)


@pytest.mark.parametrize("norm", ["linear", "softmax", "sigmoid"])
def test_outputs_lie_in_the_depth_range(norm: str) -> None:
    torch.manual_seed(0)
    head = LinearDepthHead(IN_CH, MIN, MAX, norm=norm)
    out = head(make_pyramid(FOUR_LEVELS, scale=100.0))
    assert out.dtype == torch.float32
    assert out.min() >= MIN * (1 - 1e-5) and out.max() <= MAX * (1 + 1e-6)
    assert out.max() - out.min() > 0.1


@pytest.mark.parametrize(("sizes", "in_keys", "batch_norm", "out_size"), [
    (ONE_LEVEL, None, False, (20, 28)),
    (FOUR_LEVELS, None, True, (68, 52)),  # the finest level, x4
    (FOUR_LEVELS, ("s8", "s16", "s32"), False, (36, 28)),
])
def test_shapes_and_gradients(sizes, in_keys, batch_norm: bool, out_size) -> None:
    torch.manual_seed(0)
    head = LinearDepthHead(IN_CH, MIN, MAX, in_keys=in_keys, batch_norm=batch_norm).train()
    assert head.conv_depth.in_channels == IN_CH * len(in_keys or [1])
    assert isinstance(head.bn, torch.nn.BatchNorm2d) == batch_norm
    pyramid = make_pyramid(sizes)
    out = head(pyramid)
    assert out.shape == (2, 1, *out_size)
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in head.parameters())
    read = in_keys or [next(iter(sizes))]
    assert all((pyramid[k].grad is not None) == (k in read) for k in sizes)
    assert "bin_centers" not in head.state_dict()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="bins='log'"):
        LinearDepthHead(IN_CH, MIN, MAX, bins="log")
    with pytest.raises(ValueError, match="norm='max'"):
        LinearDepthHead(IN_CH, MIN, MAX, norm="max")
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        LinearDepthHead(IN_CH, 5.0, 1.0)


def test_config_builds_dinov2s_head() -> None:
    config = OmegaConf.load(CONFIGS / "model" / "head" / "linear_depth.yaml")
    head = instantiate(config)(in_channels=IN_CH, min_depth=MIN, max_depth=MAX)
    assert isinstance(head, LinearDepthHead) and head.conv_depth.out_channels == 256 and head.upsample == 4
    assert head.norm_strategy == "linear" and isinstance(head.bn, torch.nn.Identity)
    assert torch.allclose(head.bin_centers, torch.linspace(MIN, MAX, 256))
