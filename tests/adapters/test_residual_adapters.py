"""Bottleneck and Convpass adapters: placement after LayerScale, zero-init identity, what trains, graphs."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from vitadapter.adapters import AdaptedBranch, BottleneckAdapterConfig, ConvpassAdapterConfig, build_method
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck

NECK = partial(MultiLevelNeck, out_channels=16)


def taps(encoder: Encoder, image: torch.Tensor) -> list[torch.Tensor]:
    return [t.patch_map() for t in encoder.tokens(image)]


@pytest.mark.parametrize("name", ["bottleneck", "convpass"])
@pytest.mark.parametrize(
    "placement",
    [
        {"position": ["attn", "mlp"], "mode": "sequential"},
        {"position": ["mlp"], "mode": "parallel"},
        {"position": "attn", "mode": "sequential", "layers": [1, -1]},
    ],
)
def test_fresh_adapters_give_bit_identical_features(name: str, placement: dict) -> None:
    image = torch.randn(2, 3, 48, 64)
    plain = taps(Encoder(ViTBackbone("test_vit"), NECK), image)
    adapted = taps(Encoder(ViTBackbone("test_vit"), NECK, build_method(name, **placement)), image)
    assert all(torch.equal(p, a) for p, a in zip(plain, adapted))


def test_placement_counts_and_widths() -> None:
    backbone = ViTBackbone("test_vit")  # depth 6, width 64
    Encoder(backbone, NECK, BottleneckAdapterConfig(bottleneck_dim=None, reduction_factor=8, position=["mlp"],
                                                    layers=[0, 5]))
    branches = [m for m in backbone.vit.modules() if isinstance(m, AdaptedBranch)]
    assert len(branches) == 2
    assert isinstance(backbone.vit.blocks[5].drop_path2, AdaptedBranch)
    assert not isinstance(backbone.vit.blocks[3].drop_path2, AdaptedBranch)
    assert branches[0].adapter.down.out_features == 8


def test_adapter_output_is_not_scaled_by_layerscale() -> None:
    """DeiT-III / DINOv2 scale each branch by a frozen gamma; the adapter's output is added after it."""
    kwargs = {"depth": 2, "embed_dim": 32, "num_heads": 2, "img_size": 32, "init_values": 1e-5}
    image = torch.randn(1, 3, 32, 32)
    backbone = ViTBackbone("vit_small_patch16_224", model_kwargs=kwargs, out_indices=[1, 1, 1, 1])
    encoder = Encoder(backbone, NECK, BottleneckAdapterConfig(bottleneck_dim=4, position=["mlp"], layers=[1]))
    block = backbone.vit.blocks[1]
    with torch.no_grad():
        torch.nn.init.normal_(block.drop_path2.adapter.up.bias)
    delta = block.drop_path2.adapter.up.bias  # a constant adapter output: x -> x + bias on every token
    reference = Encoder(ViTBackbone("vit_small_patch16_224", model_kwargs=kwargs, out_indices=[1, 1, 1, 1]), NECK)
    with torch.no_grad():
        adapted, plain = taps(encoder, image)[-1], taps(reference, image)[-1]
    torch.testing.assert_close(adapted - plain, delta.view(1, -1, 1, 1).expand_as(plain), atol=1e-5, rtol=0)


def test_only_adapters_get_gradients_and_lower_blocks_build_no_graph() -> None:
    backbone = ViTBackbone("test_vit", out_indices=[1, 2, 4, 5])
    encoder = Encoder(backbone, NECK, BottleneckAdapterConfig(bottleneck_dim=4, layers=[3, 4, 5]))
    maps = taps(encoder, torch.randn(1, 3, 32, 32))
    assert maps[0].grad_fn is None and maps[1].grad_fn is None  # blocks 1, 2 sit below the first adapter
    sum(m.square().mean() for m in maps[2:]).backward()
    # the up-projection starts at zero, so only it gets a gradient on the first step
    grads = {n for n, p in backbone.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(".adapter.up." in n for n in grads)
    assert all(p.grad is None for n, p in backbone.named_parameters() if ".adapter." not in n)


def test_no_adapters_after_the_last_tap() -> None:
    """Blocks after the last tapped one never run: adapters there would train nothing (and break DDP)."""
    backbone = ViTBackbone("test_vit", out_indices=[0, 1, 2, 3])  # depth 6: blocks 4 and 5 never run
    Encoder(backbone, NECK, ConvpassAdapterConfig(bottleneck_dim=4))
    adapted = [i for i, b in enumerate(backbone.vit.blocks) if isinstance(b.drop_path1, AdaptedBranch)]
    assert adapted == [0, 1, 2, 3]


def test_adapter_drop_removes_lower_adapters() -> None:
    backbone = ViTBackbone("test_vit")
    Encoder(backbone, NECK, BottleneckAdapterConfig(bottleneck_dim=4, drop_below=3))
    adapted = [i for i, b in enumerate(backbone.vit.blocks) if isinstance(b.drop_path1, AdaptedBranch)]
    assert adapted == [3, 4, 5]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"position": ["ffn"]}, "position"),
        ({"mode": "stacked"}, "mode"),
        ({"bottleneck_dim": None}, "exactly one"),
        ({"bottleneck_dim": 8, "reduction_factor": 4}, "exactly one"),
        ({"bottleneck_dim": 0}, ">= 1"),
        ({"drop_below": -1}, "drop_below"),
        ({"merge": True}, "cannot be merged"),
    ],
)
def test_bad_configs_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BottleneckAdapterConfig(**kwargs)


def test_layers_out_of_range() -> None:
    with pytest.raises(ValueError, match="model.adapter.layers"):
        Encoder(ViTBackbone("test_vit"), NECK, BottleneckAdapterConfig(layers=[6]))
