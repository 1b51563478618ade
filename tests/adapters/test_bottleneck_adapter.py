"""Bottleneck adapters: placement, zero-init identity, what trains and what builds a graph."""

import pytest
import torch

from vitadapter.adapters import ADAPTERS, AdaptedSublayer, BottleneckAdapterConfig
from vitadapter.backbone import ViTBackbone


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize(
    "placement",
    [
        {"position": ["attn", "mlp"], "mode": "sequential"},
        {"position": ["mlp"], "mode": "parallel"},
        {"position": "attn", "mode": "sequential", "layers": [1, -1]},
    ],
)
def test_fresh_adapters_give_bit_identical_features(name: str, placement: dict) -> None:
    backbone = ViTBackbone("test_vit")
    image = torch.randn(2, 3, 48, 64)
    plain = backbone(image)
    backbone.add_adapters(ADAPTERS[name](**placement))
    adapted = backbone(image)
    assert all(torch.equal(p, a) for p, a in zip(plain, adapted))


def test_placement_counts_and_widths() -> None:
    backbone = ViTBackbone("test_vit")  # depth 6, width 64
    backbone.add_adapters(BottleneckAdapterConfig(bottleneck_dim=None, reduction_factor=8, position=["mlp"],
                                                  layers=[0, 5]))
    assert len(backbone.adapters) == 2
    assert isinstance(backbone.vit.blocks[5].mlp, AdaptedSublayer)
    assert not isinstance(backbone.vit.blocks[3].mlp, AdaptedSublayer)
    assert backbone.adapters[0].down.out_features == 8


def test_only_adapters_get_gradients_and_lower_blocks_build_no_graph() -> None:
    backbone = ViTBackbone("test_vit", out_indices=[1, 2, 4, 5])
    backbone.add_adapters(BottleneckAdapterConfig(bottleneck_dim=4, layers=[3, 4, 5]))
    maps = backbone(torch.randn(1, 3, 32, 32))
    assert maps[0].grad_fn is None and maps[1].grad_fn is None  # blocks 1, 2 sit below the first adapter
    sum(m.square().mean() for m in maps[2:]).backward()
    # the up-projection starts at zero, so only it gets a gradient on the first step
    grads = {n for n, p in backbone.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(".adapter.up." in n for n in grads)
    assert all(p.grad is None for n, p in backbone.named_parameters() if ".adapter." not in n)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"position": ["ffn"]}, "position"),
        ({"mode": "stacked"}, "mode"),
        ({"bottleneck_dim": None}, "exactly one"),
        ({"bottleneck_dim": 8, "reduction_factor": 4}, "exactly one"),
        ({"bottleneck_dim": 0}, ">= 1"),
    ],
)
def test_bad_configs_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BottleneckAdapterConfig(**kwargs)


def test_layers_out_of_range_and_double_injection() -> None:
    backbone = ViTBackbone("test_vit")
    with pytest.raises(ValueError, match="model.adapter.layers"):
        backbone.add_adapters(BottleneckAdapterConfig(layers=[6]))
    backbone.add_adapters(BottleneckAdapterConfig(layers=[0]))
    with pytest.raises(ValueError, match="already has an adapter"):
        backbone.add_adapters(BottleneckAdapterConfig(layers=[0]))
