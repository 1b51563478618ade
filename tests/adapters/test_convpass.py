"""Convpass as its authors' code computes it (JieShibo/PETL-ViT), and `convpass_demo` as the demos were tuned with."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import Tensor, nn

from tests.helpers import CONFIGS
from vitadapter.adapters import AdaptedBranch, ConvpassAdapter, ConvpassAdapterConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck

DIM, HIDDEN, GRID = 24, 8, (3, 5)


def adapter_config(name: str) -> ConvpassAdapterConfig:
    with initialize_config_dir(config_dir=str(CONFIGS / "model" / "adapter"), version_base="1.3"):
        return instantiate(compose(config_name=name))


def built(config: ConvpassAdapterConfig, num_prefix_tokens: int, seed: int = 0) -> ConvpassAdapter:
    torch.manual_seed(seed)
    adapter = config.build(DIM, num_prefix_tokens)
    adapter.grid = GRID
    return adapter


def randomise(adapter: ConvpassAdapter) -> None:
    """Non-zero weights everywhere (a fresh adapter outputs zero), from a generator of its own."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in adapter.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))


def tokens(num_prefix_tokens: int) -> Tensor:
    return torch.randn(2, num_prefix_tokens + GRID[0] * GRID[1], DIM, generator=torch.Generator().manual_seed(2))


def quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


def paper_hidden(adapter: ConvpassAdapter, x: Tensor, prefix: int) -> Tensor:
    """The authors' forward up to the dropout: down, QuickGELU, conv (prefix tokens: its centre tap), QuickGELU."""
    hidden = quick_gelu(F.linear(x, adapter.down.weight, adapter.down.bias))
    grid = hidden[:, prefix:].transpose(1, 2).reshape(2, HIDDEN, *GRID)
    patches = F.conv2d(grid, adapter.conv.weight, adapter.conv.bias, padding=1).flatten(2).transpose(1, 2)
    centre = adapter.conv.weight[:, :, 1, 1]
    prefix_out = F.linear(hidden[:, :prefix], centre, adapter.conv.bias)
    return quick_gelu(torch.cat([prefix_out, patches], dim=1))


def test_defaults_are_the_authors() -> None:
    config = adapter_config("convpass")
    assert config == ConvpassAdapterConfig()
    assert (config.mode, tuple(config.position), config.bottleneck_dim, config.kernel_size, config.scale) == (
        "parallel", ("attn", "mlp"), 8, 3, 1.0)
    assert (config.activation, config.act_before_conv, config.init, config.prefix_through_conv, config.dropout) == (
        "quick_gelu", True, "identity", True, 0.1)


@pytest.mark.parametrize("init", ["identity", "xavier"])
def test_paper_initialisation(init: str) -> None:
    adapter = built(ConvpassAdapterConfig(init=init), num_prefix_tokens=1, seed=5)
    # the same draws: the three modules with PyTorch's init, then xavier-uniform on down (and the conv)
    torch.manual_seed(5)
    nn.Linear(DIM, HIDDEN), nn.Conv2d(HIDDEN, HIDDEN, 3, padding=1), nn.Linear(HIDDEN, DIM)
    down = nn.init.xavier_uniform_(torch.empty(HIDDEN, DIM))
    assert torch.equal(adapter.down.weight, down)
    if init == "identity":
        conv = torch.zeros(HIDDEN, HIDDEN, 3, 3)
        conv[:, :, 1, 1] = torch.eye(HIDDEN)
    else:
        conv = nn.init.xavier_uniform_(torch.empty(HIDDEN, HIDDEN, 3, 3))
    assert torch.equal(adapter.conv.weight, conv)
    for zero in (adapter.down.bias, adapter.conv.bias, adapter.up.weight, adapter.up.bias):
        assert torch.equal(zero, torch.zeros_like(zero))


def test_identity_conv_makes_a_token_wise_adapter_at_start() -> None:
    """With the conv at its identity start, every token (class token included) is up(act(act(down(x))))."""
    adapter = built(ConvpassAdapterConfig(scale=0.5), num_prefix_tokens=1).eval()
    with torch.no_grad():
        nn.init.normal_(adapter.up.weight)
    x = tokens(1)
    expected = F.linear(quick_gelu(quick_gelu(adapter.down(x))), adapter.up.weight) * 0.5
    torch.testing.assert_close(adapter(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prefix", [0, 1, 5])  # no prefix (GAP models), class token, class + 4 registers
def test_forward_is_the_authors_formula(prefix: int) -> None:
    adapter = built(ConvpassAdapterConfig(scale=10.0), num_prefix_tokens=prefix)
    randomise(adapter)
    x = tokens(prefix)
    up = partial(F.linear, weight=adapter.up.weight, bias=adapter.up.bias)
    with torch.no_grad():
        torch.testing.assert_close(adapter.eval()(x), up(paper_hidden(adapter, x, prefix)) * 10.0)
        adapter.train()
        torch.manual_seed(3)
        trained = adapter(x)
        torch.manual_seed(3)
        hidden = paper_hidden(adapter, x, prefix)
        expected = up(F.dropout(hidden, p=0.1, training=True)) * 10.0
    torch.testing.assert_close(trained, expected)


def test_placement_is_the_authors_block() -> None:
    """x + attn(n1(x)) + s·A(n1(x)), then x + mlp(n2(x)) + s·M(n2(x)) (test_vit: no LayerScale, no drop path)."""
    backbone = ViTBackbone("test_vit")
    Encoder(backbone, partial(MultiLevelNeck, out_channels=8), ConvpassAdapterConfig(scale=0.1, layers=[0]))
    block = backbone.vit.blocks[0]
    assert isinstance(block.drop_path1, AdaptedBranch) and isinstance(block.drop_path2, AdaptedBranch)
    attn_adapter, mlp_adapter = block.drop_path1.adapter, block.drop_path2.adapter
    for adapter in (attn_adapter, mlp_adapter):
        randomise(adapter)
        adapter.grid = (4, 4)
    x = torch.randn(2, 17, backbone.embed_dim)
    with torch.no_grad():
        out = block.eval()(x)
        normed = block.norm1(x)
        x = x + block.attn(normed) + attn_adapter(normed)  # the adapter multiplies by s itself
        normed = block.norm2(x)
        expected = x + block.mlp(normed) + mlp_adapter(normed)
    torch.testing.assert_close(out, expected)


def demo_formula(adapter: ConvpassAdapter, x: Tensor) -> Tensor:
    """What `convpass_demo` computed before the paper's form was the default: down, 5x5 conv on the patches only,
    GELU (erf), up, times scale; PyTorch's init, no dropout."""
    hidden = F.linear(x, adapter.down.weight, adapter.down.bias)
    grid = hidden[:, 1:].transpose(1, 2).reshape(2, 32, *GRID)
    patches = F.conv2d(grid, adapter.conv.weight, adapter.conv.bias, padding=2).flatten(2).transpose(1, 2)
    hidden = F.gelu(torch.cat([hidden[:, :1], patches], dim=1))
    return F.linear(hidden, adapter.up.weight, adapter.up.bias)


def test_demo_variant_computes_what_the_demos_were_tuned_with() -> None:
    config = adapter_config("convpass_demo")
    assert (config.bottleneck_dim, config.kernel_size, config.scale) == (32, 5, 1.0)
    adapter = built(config, num_prefix_tokens=1, seed=7)
    # PyTorch's init, drawn in the order the modules are created
    torch.manual_seed(7)
    reference = [nn.Linear(DIM, 32), nn.Conv2d(32, 32, 5, padding=2), nn.Linear(32, DIM)]
    assert torch.equal(adapter.down.weight, reference[0].weight) and torch.equal(adapter.down.bias, reference[0].bias)
    assert torch.equal(adapter.conv.weight, reference[1].weight) and torch.equal(adapter.conv.bias, reference[1].bias)
    assert not adapter.up.weight.any() and not adapter.up.bias.any()
    with torch.no_grad():
        nn.init.normal_(adapter.up.weight)
        nn.init.normal_(adapter.up.bias)
        x = tokens(1)
        expected = demo_formula(adapter, x)
        torch.testing.assert_close(adapter.train()(x), expected, rtol=0, atol=0)  # no dropout in training either
        torch.testing.assert_close(adapter.eval()(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"init": "kaiming"}, "model.adapter.init"), ({"activation": "nope"}, "model.adapter.activation"),
     ({"dropout": 1.0}, "model.adapter.dropout"), ({"kernel_size": 4}, "model.adapter.kernel_size")],
)
def test_bad_fields_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConvpassAdapterConfig(**kwargs)
