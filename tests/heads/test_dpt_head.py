"""The DPT depth head: shapes on odd pyramids, the toolbox's forward order on aligned sizes, ranges, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor

from tests.helpers import CONFIGS
from vitadapter.heads import DPTHead

IN_CH, MIN, MAX = 8, 0.001, 10.0
SIZES = {
    "square": {"s4": (16, 16), "s8": (8, 8), "s16": (4, 4), "s32": (2, 2)},
    "odd": {"s4": (17, 13), "s8": (9, 7), "s16": (5, 4), "s32": (3, 2)},
}


def make_pyramid(sizes: dict[str, tuple[int, int]], seed: int = 0) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(2, IN_CH, h, w, generator=generator).requires_grad_() for k, (h, w) in sizes.items()}


def _toolbox_forward(head: DPTHead, pyramid: dict[str, Tensor]) -> Tensor:
    """The toolbox's DPTHead.forward after its reassemble stage, on the head's modules: the skip resized to the
    running map, x2 upsampling by scale factor in every fusion block."""
    x = [conv(pyramid[k]) for conv, k in zip(head.convs, head.in_keys)]

    def fuse(block, out, skip=None):
        if skip is not None:
            if skip.shape != out.shape:
                skip = F.interpolate(skip, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = out + block.skip_unit(skip)
        out = F.interpolate(block.unit(out), scale_factor=2, mode="bilinear", align_corners=True)
        return block.project(out)

    out = fuse(head.fusions[0], x[-1])
    for i in range(1, len(head.fusions)):
        out = fuse(head.fusions[i], out, x[-(i + 1)])
    return F.relu(head.depth_head(head.project(out))) + head.min_depth


def test_equals_the_toolboxs_forward_on_aligned_sizes() -> None:
    torch.manual_seed(0)
    head = DPTHead(IN_CH, MIN, MAX, channels=16).eval()
    pyramid = make_pyramid(SIZES["square"])
    with torch.no_grad():
        assert torch.allclose(head(pyramid), _toolbox_forward(head, pyramid), atol=1e-6)
    assert head.fusions[0].skip_unit is None and all(f.skip_unit is not None for f in head.fusions[1:])


@pytest.mark.parametrize(("sizes", "in_keys", "out_size"), [
    (SIZES["square"], ("s4", "s8", "s16", "s32"), (64, 64)),
    (SIZES["odd"], ("s4", "s8", "s16", "s32"), (68, 52)),
    ({"s16": (5, 7)}, ("s16",), (20, 28)),
])
def test_shapes_range_and_gradients(sizes, in_keys, out_size) -> None:
    torch.manual_seed(0)
    head = DPTHead(IN_CH, MIN, MAX, channels=16, in_keys=in_keys).train()
    pyramid = make_pyramid(sizes)
    out = head(pyramid)
    assert out.shape == (2, 1, *out_size)
    assert out.min() >= MIN and out.max() > MIN  # relu + min_depth, not all clipped
    out.mean().backward()
    assert [n for n, p in head.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()] == []
    assert all(head.convs[k].weight.grad.abs().sum() > 0 for k in range(len(in_keys)))
    assert all(pyramid[k].grad.abs().sum() > 0 for k in in_keys)


def test_negative_output_is_min_depth() -> None:
    head = DPTHead(IN_CH, 0.5, MAX, channels=8, in_keys=("s16",))
    with torch.no_grad():
        head.depth_head[-1].weight.zero_()
        head.depth_head[-1].bias.fill_(-1.0)
    out = head(make_pyramid({"s16": (3, 3)}))
    assert torch.equal(out, torch.full_like(out, 0.5))


def test_config_builds_the_head() -> None:
    head = instantiate(OmegaConf.load(CONFIGS / "model" / "head" / "dpt.yaml"))(in_channels=IN_CH, min_depth=MIN,
                                                                                 max_depth=MAX)
    assert isinstance(head, DPTHead) and head.in_keys == ("s4", "s8", "s16", "s32")
    assert head.convs[0].out_channels == 256 and head.min_depth == MIN
