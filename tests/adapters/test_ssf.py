"""SSF: fresh = frozen bit for bit, only scales and shifts train, and merging gives back a plain timm ViT."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from tests.helpers import CONFIGS
from vitadapter.adapters.ssf import ScaleShift, SSFConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck

NECK = partial(MultiLevelNeck, out_channels=16)
TINY = {"depth": 4, "embed_dim": 64, "num_heads": 2, "img_size": 64}
FAMILIES = ["vit_base_patch16_224", "vit_small_patch14_reg4_dinov2", "deit3_small_patch16_224",
            "eva02_tiny_patch14_224", "beit_base_patch16_224", "vit_base_patch16_siglip_gap_224"]


def encoder(name: str, method: SSFConfig | None = None) -> Encoder:
    torch.manual_seed(0)
    return Encoder(ViTBackbone(name, model_kwargs=TINY), NECK, method).eval()


def taps(enc: Encoder, image: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return [t.x for t in enc.tokens(image)]


@pytest.mark.parametrize("name", FAMILIES)
def test_fresh_ssf_is_the_frozen_vit_and_merging_gives_back_plain_timm(name: str) -> None:
    image = torch.randn(2, 3, 40, 56)
    plain, adapted = encoder(name), encoder(name, SSFConfig())
    assert all(torch.equal(a, b) for a, b in zip(taps(plain, image), taps(adapted, image)))

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in adapted.method_parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    unmerged = taps(adapted, image)
    adapted.merge()
    merged = taps(adapted, image)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(unmerged, merged))
    assert not torch.allclose(unmerged[-1], taps(plain, image)[-1])
    vit, timm_vit = adapted.backbone.vit, plain.backbone.vit
    assert list(vit.state_dict()) == list(timm_vit.state_dict())
    assert [type(m) for m in vit.modules()] == [type(m) for m in timm_vit.modules()]
    assert not any(p.requires_grad for p in vit.parameters())


@pytest.mark.parametrize("name", ["vit_base_patch16_224", "eva02_tiny_patch14_224", "beit_base_patch16_224"])
def test_only_scales_and_shifts_train_and_all_get_a_gradient(name: str) -> None:
    enc = encoder(name, SSFConfig())
    vit = enc.backbone.vit
    trainable = {n: p for n, p in vit.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".scale", ".shift")) for n in trainable)
    assert all(enc.backbone.is_frozen_tensor(p) for n, p in vit.named_parameters() if n not in trainable)
    # frozen keys are timm's with `.base` inserted
    timm_keys = set(encoder(name).backbone.vit.state_dict())
    assert {k.replace(".base.", ".") for k in vit.state_dict() if k not in trainable} == timm_keys
    enc.train()
    sum(v.square().mean() for v in enc(torch.randn(1, 3, 32, 48)).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


def test_every_affine_layer_of_the_adapted_blocks_and_the_embedding_is_wrapped() -> None:
    enc = encoder("vit_base_patch16_224", SSFConfig())
    vit = enc.backbone.vit
    wrapped = {n for n, m in vit.named_modules() if isinstance(m, ScaleShift)}
    per_block = {"norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"}
    assert wrapped == {"patch_embed.proj"} | {f"blocks.{i}.{n}" for i in range(4) for n in per_block}
    widths = 64 + 3 * 64 + 64 + 64 + 4 * 64 + 64  # norm1, qkv, proj, norm2, fc1, fc2
    assert sum(p.numel() for p in enc.method_parameters()) == 2 * (4 * widths + 64)


def test_bias_free_layers_get_a_scale_only_and_the_fused_qkv_is_scaled_where_timm_reads_its_weight() -> None:
    enc = encoder("eva02_tiny_patch14_224", SSFConfig(layers=[1], embedding=False))
    qkv = enc.backbone.vit.blocks[1].attn.qkv  # EVA-02: F.linear(x, qkv.weight, cat(q_bias, k_bias, v_bias))
    assert isinstance(qkv, ScaleShift) and qkv.shift is None and qkv.bias is None
    assert not isinstance(enc.backbone.vit.blocks[0].attn.qkv, ScaleShift)
    with torch.no_grad():
        qkv.scale.mul_(2.0)
    assert torch.equal(qkv.weight, 2 * qkv.base.weight)


@pytest.mark.parametrize("base", [nn.Linear(8, 6), nn.Linear(8, 6, bias=False), nn.LayerNorm(8), nn.Conv2d(3, 6, 2)])
def test_scale_shift_is_the_papers_formula_and_its_folded_weights_agree(base: nn.Module) -> None:
    wrapper = ScaleShift(base, init_std=0.5)
    x = torch.randn(2, 3, 4, 8) if isinstance(base, nn.Conv2d) else torch.randn(5, 8)
    shape = (-1, 1, 1) if isinstance(base, nn.Conv2d) else (-1,)
    expected = base(x) * wrapper.scale.reshape(shape)
    if wrapper.shift is not None:
        expected = expected + wrapper.shift.reshape(shape)
    folded = torch.func.functional_call(base, {"weight": wrapper.weight, "bias": wrapper.bias}, (x,))
    assert torch.allclose(wrapper(x), expected, atol=1e-6) and torch.allclose(folded, expected, atol=1e-5)


def test_drop_below_without_embedding_and_refusals() -> None:
    with pytest.raises(ValueError, match="model.adapter.embedding=false"):
        SSFConfig(drop_below=2)
    with pytest.raises(ValueError, match="init_std"):
        SSFConfig(init_std=-1.0)
    enc = encoder("vit_base_patch16_224", SSFConfig(drop_below=2, embedding=False))
    assert {n.split(".")[1] for n, _ in enc.backbone.vit.named_parameters() if n.endswith(".scale")} == {"2", "3"}
    with pytest.raises(ValueError, match="already has SSF"):
        SSFConfig().apply(enc.backbone)


def test_config_builds_a_mergeable_method() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS / "model" / "adapter"), version_base="1.3"):
        method = instantiate(compose(config_name="ssf", overrides=["merge=true"]))
    assert isinstance(method, SSFConfig) and method.merge and method.mergeable and method.init_std == 0.0
