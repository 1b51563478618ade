"""BitFit and norm tuning train exactly the ViT's biases / normalisation layers the encoder runs, or refuse."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from vitadapter.adapters import build_method
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck

NECK = partial(MultiLevelNeck, out_channels=8)
SMALL = {"depth": 3, "embed_dim": 32, "num_heads": 2}
# three blocks, two run (the last tap is block 1): block 2 and the final norm / head never train
MODELS = {
    "vit": ("test_vit", {"depth": 3}),
    # timm RmsNorm in the blocks, torch RMSNorm before them, q/k norms, a norm in the patch embedding
    "vit_rms": ("test_vit", {"depth": 3, "norm_layer": "rmsnorm", "pre_norm": True, "qk_norm": True,
                             "embed_norm_layer": nn.RMSNorm, "reg_tokens": 2, "init_values": 1e-5}),
    # separate q/v biases, sub-LN in attention and SwiGLU (EVA-02 large's layout)
    "eva": ("eva02_tiny_patch14_224", {**SMALL, "img_size": 28, "scale_attn_inner": True, "scale_mlp": True}),
    # separate q/v biases, relative-position tables, LayerScale
    "beit": ("beit_base_patch16_224", {**SMALL, "img_size": 32}),
}
RUN = (0, 1)


def per_block(*names: str) -> set[str]:
    return {f"blocks.{i}.{name}" for i in RUN for name in names}


BITFIT = {
    "vit": {"patch_embed.proj.bias"} | per_block("norm1.bias", "attn.qkv.bias", "attn.proj.bias", "norm2.bias",
                                                 "mlp.fc1.bias", "mlp.fc2.bias"),
    "vit_rms": per_block("attn.qkv.bias", "attn.proj.bias", "mlp.fc1.bias", "mlp.fc2.bias"),
    "eva": {"patch_embed.proj.bias"} | per_block(
        "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.norm.bias", "attn.proj.bias", "norm2.bias",
        "mlp.fc1_g.bias", "mlp.fc1_x.bias", "mlp.norm.bias", "mlp.fc2.bias"),
    "beit": {"patch_embed.proj.bias"} | per_block("norm1.bias", "attn.q_bias", "attn.v_bias", "attn.proj.bias",
                                                  "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias"),
}
NORM = {
    "vit": per_block("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"),
    "vit_rms": {"patch_embed.norm.weight", "norm_pre.weight"} | per_block(
        "norm1.weight", "attn.q_norm.weight", "attn.k_norm.weight", "norm2.weight"),
    "eva": per_block("norm1.weight", "norm1.bias", "attn.norm.weight", "attn.norm.bias", "norm2.weight",
                     "norm2.bias", "mlp.norm.weight", "mlp.norm.bias"),
    "beit": per_block("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"),
}


def encoder(model: str, method: str, **fields) -> Encoder:
    name, kwargs = MODELS[model]
    backbone = ViTBackbone(name, model_kwargs=kwargs, out_indices=[0, 1, 1, 1])
    return Encoder(backbone, NECK, build_method(method, **fields))


def trained(enc: Encoder) -> set[str]:
    return {n for n, p in enc.backbone.vit.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method, expected", [("bitfit", BITFIT), ("norm", NORM)])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_exactly_these_tensors_train_and_each_gets_a_gradient(model: str, method: str, expected: dict) -> None:
    enc = encoder(model, method)
    assert trained(enc) == expected[model]
    assert enc.hooks is None and {id(p) for p in enc.method_parameters()} == {
        id(p) for p in enc.backbone.vit.parameters() if p.requires_grad}
    sum(level.square().mean() for level in enc.train()(torch.randn(2, 3, 32, 48)).values()).backward()
    assert {n for n, p in enc.backbone.vit.named_parameters() if p.grad is not None} == expected[model]


@pytest.mark.parametrize("fields", [{"drop_below": 1}, {"layers": [1]}])
def test_the_embedding_trains_only_with_block_0(fields: dict) -> None:
    assert trained(encoder("vit", "bitfit", **fields)) == {n for n in BITFIT["vit"] if n.startswith("blocks.1.")}
    assert trained(encoder("vit_rms", "norm", **fields)) == {n for n in NORM["vit_rms"] if n.startswith("blocks.1.")}


NO_BIAS = {"depth": 2, "qkv_bias": False, "proj_bias": False, "pre_norm": True,  # pre_norm: no patch-embed bias
           "norm_layer": partial(nn.LayerNorm, bias=False)}
NO_AFFINE = {"depth": 2, "norm_layer": partial(nn.LayerNorm, elementwise_affine=False)}


@pytest.mark.parametrize(
    "method, kwargs, out_indices, fields, what",
    [
        ("bitfit", NO_BIAS, [0, 1, 1, 1], {}, "no bias"),
        ("norm", NO_AFFINE, [0, 1, 1, 1], {}, "no normalisation-layer weight"),
        ("bitfit", {"depth": 2}, [0, 0, 0, 0], {"layers": [1]}, "no bias"),  # block 1 never runs
    ],
)
def test_a_method_with_nothing_to_train_is_refused(method: str, kwargs: dict, out_indices: list[int], fields: dict,
                                                   what: str) -> None:
    backbone = ViTBackbone("test_vit", model_kwargs=kwargs, out_indices=out_indices)
    with pytest.raises(ValueError, match=rf"model.adapter.name='{method}' finds {what} to train in "
                                         r"model.backbone.name='test_vit'"):
        Encoder(backbone, NECK, build_method(method, **fields))
