"""The linear segmentation probe: BatchNorm + 1x1 conv by hand, mmseg's resize_concat, shapes and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor

from tests.helpers import CONFIGS
from vitadapter.heads import LinearHead

IN_CH, K = 6, 5
ONE_LEVEL = {"s16": (5, 7)}
FOUR_LEVELS = {"s4": (17, 13), "s8": (9, 7), "s16": (5, 4), "s32": (3, 2)}


def make_pyramid(sizes: dict[str, tuple[int, int]], seed: int = 0) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(2, IN_CH, h, w, generator=generator).requires_grad_() for k, (h, w) in sizes.items()}


def _randomise(head: LinearHead) -> None:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in (head.bn.weight, head.bn.bias, head.bn.running_mean, *head.classifier[-1].parameters()):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        head.bn.running_var.copy_(torch.rand(head.bn.running_var.shape, generator=generator) + 0.5)


def _by_hand(x: Tensor, head: LinearHead, mean: Tensor, var: Tensor) -> Tensor:
    bn = head.bn
    normed = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps) * bn.weight[:, None, None]
    normed = normed + bn.bias[:, None, None]
    conv = head.classifier[-1]
    return torch.einsum("nchw,kc->nkhw", normed, conv.weight[:, :, 0, 0]) + conv.bias[:, None, None]


def test_eval_output_is_batchnorm_then_conv_by_hand() -> None:
    head = LinearHead(IN_CH, K).eval()
    _randomise(head)
    x = make_pyramid(ONE_LEVEL)["s16"]
    expected = _by_hand(x, head, head.bn.running_mean, head.bn.running_var)
    assert torch.allclose(head({"s16": x}), expected, atol=1e-5)


def test_training_output_normalises_with_the_batch_statistics() -> None:
    head = LinearHead(IN_CH, K, dropout=0.0).train()
    _randomise(head)
    x = make_pyramid(ONE_LEVEL)["s16"]
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    assert torch.allclose(head({"s16": x}), _by_hand(x, head, mean, var), atol=1e-5)


def test_several_levels_are_resized_to_the_first_and_concatenated() -> None:
    head = LinearHead(IN_CH, K, in_keys=("s8", "s32")).eval()
    assert head.bn.num_features == 2 * IN_CH
    _randomise(head)
    pyramid = make_pyramid(FOUR_LEVELS)
    x = torch.cat([pyramid["s8"], F.interpolate(pyramid["s32"], size=(9, 7), mode="bilinear", align_corners=False)], 1)
    expected = _by_hand(x, head, head.bn.running_mean, head.bn.running_var)
    assert torch.allclose(head(pyramid), expected, atol=1e-5)


@pytest.mark.parametrize(("sizes", "in_keys", "out_size"), [
    (ONE_LEVEL, None, (5, 7)),
    (FOUR_LEVELS, None, (17, 13)),  # the finest level
    (FOUR_LEVELS, ("s4", "s8", "s16", "s32"), (17, 13)),
])
def test_shapes_and_gradients(sizes, in_keys, out_size) -> None:
    torch.manual_seed(0)
    head = LinearHead(IN_CH, K, in_keys=in_keys, dropout=0.1).train()
    assert head.num_classes == K
    pyramid = make_pyramid(sizes)
    out = head(pyramid)
    assert out.shape == (2, K, *out_size)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    read = in_keys or [next(iter(sizes))]
    assert all((pyramid[k].grad is not None) == (k in read) for k in sizes)
    head.eval()
    with torch.no_grad():
        assert torch.equal(head(pyramid), head(pyramid))  # no dropout at eval


def test_classifier_init_and_missing_level() -> None:
    head = LinearHead(IN_CH, K, in_keys=("s4",))
    conv = head.classifier[-1]
    assert conv.out_channels == K and torch.count_nonzero(conv.bias) == 0
    with pytest.raises(KeyError, match="lacks levels"):
        head(make_pyramid(ONE_LEVEL))


def test_config_builds_the_head() -> None:
    head = instantiate(OmegaConf.load(CONFIGS / "model" / "head" / "linear.yaml"))(in_channels=IN_CH, num_classes=K)
    assert isinstance(head, LinearHead) and head.in_keys is None and isinstance(head.classifier[0], torch.nn.Identity)
