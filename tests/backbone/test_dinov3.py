"""DINOv3 (timm's `Eva` with DINOv3 RoPE, 4 registers, no absolute position embedding) in the encoder: the block
loop equals timm's `forward_intermediates` at any input size, every method and neck runs on it, and the 7B's
structure is checked on the meta device."""

from __future__ import annotations

from functools import partial

import pytest
import timm
import torch
from timm.layers.pos_embed_sincos import RotaryEmbeddingDinoV3

from vitadapter.adapters import build_method, import_all_methods
from vitadapter.backbone import ViTBackbone
from vitadapter.backbone.families import EvaFamily
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck, TappedTokens, ViTAdapterNeck

SMALL = ["vit_small_patch16_dinov3", "vit_small_patch16_dinov3_qkvb", "vit_tiny_patch16_dinov3_qkvb"]
SIZES = [(64, 64), (48, 80), (50, 75), (33, 17)]  # square, non-square, and not multiples of 16
TINY = {"depth": 4, "embed_dim": 64, "num_heads": 2}  # DINOv3's layout at a width the CPU runs in milliseconds


@pytest.mark.parametrize("name", timm.list_models("*_dinov3*"))
def test_every_dinov3_model_is_an_eva_with_registers_and_dinov3_rope(name: str) -> None:
    backbone = ViTBackbone(name, device="meta")
    vit = backbone.vit
    assert isinstance(backbone.family, EvaFamily) and backbone.family.extra_tokens_refusal  # RoPE: no prompts
    assert isinstance(vit.rope, RotaryEmbeddingDinoV3) and vit.pos_embed is None
    assert vit.reg_token.shape[1] == 4 and backbone.num_prefix_tokens == 5 and backbone.patch_size == 16
    assert backbone.out_indices == [(k + 1) * backbone.depth // 4 - 1 for k in range(4)]
    assert backbone.fingerprint is None and all(t.is_meta for t in vit.state_dict().values())


def test_the_7b_structure_on_the_meta_device() -> None:
    backbone = ViTBackbone("vit_7b_patch16_dinov3", device="meta", out_indices="even4")
    vit, block = backbone.vit, backbone.vit.blocks[0]
    assert (backbone.depth, backbone.embed_dim, block.attn.num_heads) == (40, 4096, 32)
    assert (vit.rope.dim, vit.rope.temperature) == (4096 // 32, 100.0)  # RoPE over each 128-wide head
    assert vit.reg_token.shape == (1, 4, 4096) and vit.pos_embed is None
    assert (block.mlp.fc1_g.out_features, block.mlp.fc1_x.out_features, block.mlp.fc2.in_features) == (8192,) * 3
    assert block.attn.qkv.bias is None and block.gamma_1.shape == (4096,)
    assert backbone.out_indices == [9, 19, 29, 39]
    state = vit.state_dict()
    assert sum(t.numel() for t in state.values()) == 6_716_030_976
    # what frozen_dtype=bfloat16 keeps: the matrices in 2 bytes, the vectors in 4
    kept = sum(t.numel() * (2 if t.ndim >= 2 else 4) for t in state.values())
    assert round(kept / 1e9, 2) == 13.44


@pytest.mark.parametrize("name", SMALL)
def test_block_loop_equals_timms_forward_intermediates(name: str) -> None:
    backbone = ViTBackbone(name, model_kwargs={"depth": 3}, out_indices=[0, 1, 2])
    encoder = Encoder(backbone, partial(MultiLevelNeck, out_channels=8)).eval()
    for height, width in SIZES:
        image = torch.randn(1, 3, height, width)
        with torch.no_grad():
            reference = backbone.vit.forward_intermediates(image, indices=[0, 1, 2], intermediates_only=True)
            ours = [tap.patch_map() for tap in encoder.tokens(image)]
        assert ours[0].shape[-2:] == (-(-height // 16), -(-width // 16))
        assert all(torch.equal(a, b) for a, b in zip(reference, ours))


METHODS = sorted(set(import_all_methods()) - {"fusion", "vpt"})  # fusion fuses checkpoints; vpt: see below
NECKS = {
    "multilevel": partial(MultiLevelNeck, out_channels=8),
    "simple_pyramid": partial(MultiLevelNeck, out_channels=8, source="last"),
    "vit_adapter": partial(ViTAdapterNeck, prior_channels=8, extra_extractors=0),
    "vit_adapter_side": partial(ViTAdapterNeck, prior_channels=8, extra_extractors=0, inject=False),
    "tokens": partial(TappedTokens, class_token=True),
}


def _train_step(encoder: Encoder, image: torch.Tensor) -> dict[str, torch.Tensor]:
    encoder.train()
    pyramid = encoder(image)
    sum(level.float().square().mean() for level in pyramid.values()).backward()
    return pyramid


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_on_dinov3_in_bfloat16(method: str) -> None:
    backbone = ViTBackbone("vit_small_patch16_dinov3_qkvb", model_kwargs=TINY, frozen_dtype="bfloat16")
    encoder = Encoder(backbone, NECKS["multilevel"], build_method(method))
    pyramid = _train_step(encoder, torch.randn(2, 3, 40, 56))
    trained = [p for p in encoder.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.isfinite().all() for p in trained)
    assert [tuple(level.shape[-2:]) for level in pyramid.values()] == [(10, 14), (5, 7), (3, 4), (2, 2)]


@pytest.mark.parametrize("neck", sorted(NECKS))
def test_every_neck_runs_on_dinov3_at_odd_sizes(neck: str) -> None:
    backbone = ViTBackbone("vit_tiny_patch16_dinov3_qkvb", model_kwargs=TINY, frozen_dtype="bfloat16")
    encoder = Encoder(backbone, NECKS[neck], build_method("lora"))
    for height, width in SIZES[2:]:
        pyramid = _train_step(encoder, torch.randn(1, 3, height, width))
        assert all(level.isfinite().all() for level in pyramid.values())
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)


def test_prompts_are_refused_with_the_reason() -> None:
    backbone = ViTBackbone("vit_small_patch16_dinov3", model_kwargs=TINY)
    with pytest.raises(ValueError, match="rotary position embeddings"):
        Encoder(backbone, NECKS["multilevel"], build_method("vpt"))
