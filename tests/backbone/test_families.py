"""Every plain-ViT family timm ships runs in the encoder (random init, tiny), or is refused with the reason."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tests.helpers import CONFIGS
from vitadapter.backbone import ViTBackbone
from vitadapter.backbone.families import BeitFamily, EvaFamily, VisionTransformerFamily
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck, ViTAdapterNeck

TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}

# one small model of every family: timm name -> (family, extra constructor arguments)
FAMILY_MODELS = {
    "deit_tiny_patch16_224": (VisionTransformerFamily, {}),
    "deit3_small_patch16_224": (VisionTransformerFamily, {}),  # LayerScale, no class-token position
    "vit_base_patch16_224.augreg_in21k": (VisionTransformerFamily, {}),
    "vit_small_patch14_dinov2": (VisionTransformerFamily, {}),
    "vit_small_patch14_reg4_dinov2": (VisionTransformerFamily, {}),
    "vit_base_patch16_clip_224": (VisionTransformerFamily, {}),  # pre-norm
    "vit_base_patch16_siglip_224": (VisionTransformerFamily, {}),  # attention-pool head, no class token
    "vit_base_patch16_siglip_gap_224": (VisionTransformerFamily, {}),
    "vit_medium_patch16_gap_256": (VisionTransformerFamily, {}),
    "flexivit_small": (VisionTransformerFamily, {}),
    "eva02_tiny_patch14_224": (EvaFamily, {}),  # RoPE, SwiGLU
    "vit_pe_core_tiny_patch16_384": (EvaFamily, {}),
    "vit_base_patch16_rope_224": (EvaFamily, {}),
    "beit_base_patch16_224": (BeitFamily, {}),
    "beitv2_base_patch16_224": (BeitFamily, {}),
}


def build(name: str, **extra) -> ViTBackbone:
    kwargs = {**TINY, **FAMILY_MODELS[name][1], **extra}
    return ViTBackbone(name, model_kwargs=kwargs, out_indices=[0, 1, 1, 1])


def encoder_for(backbone: ViTBackbone) -> Encoder:
    return Encoder(backbone, partial(MultiLevelNeck, out_channels=8))


@pytest.mark.parametrize("name", sorted(FAMILY_MODELS))
def test_family_runs_any_input_size(name: str) -> None:
    backbone = build(name)
    assert type(backbone.family) is FAMILY_MODELS[name][0]
    encoder = encoder_for(backbone).eval()
    for height, width in [(64, 64), (50, 75)]:
        with torch.no_grad():
            pyramid = encoder(torch.randn(2, 3, height, width))
        assert [tuple(p.shape) for p in pyramid.values()] == [
            (2, 8, -(-height // s), -(-width // s)) for s in (4, 8, 16, 32)
        ]


@pytest.mark.parametrize("name", sorted(n for n, (f, _) in FAMILY_MODELS.items() if f is not BeitFamily))
def test_block_loop_matches_timm_forward_intermediates(name: str) -> None:
    backbone = build(name)
    image = torch.randn(1, 3, 70, 45)
    with torch.no_grad():
        reference = backbone.vit.forward_intermediates(image, indices=[0, 1], intermediates_only=True)
        ours = [t.patch_map() for t in encoder_for(backbone).tokens(image)]
    assert torch.equal(reference[0], ours[0]) and torch.equal(reference[1], ours[-1])


def test_beit_relative_bias_is_resampled_from_the_untouched_table() -> None:
    backbone = build("beit_base_patch16_224", img_size=64)  # a 4x4 window
    table = backbone.vit.blocks[0].attn.relative_position_bias_table.detach().clone()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        # at the table's own window the resampling is the identity: timm's own forward agrees exactly
        reference = backbone.vit.forward_intermediates(image, indices=[0, 1], intermediates_only=True)
        encoder = encoder_for(backbone)
        ours = [t.patch_map() for t in encoder.tokens(image)]
        encoder.tokens(torch.randn(1, 3, 96, 128))  # another grid
    torch.testing.assert_close(reference[1], ours[-1], atol=1e-5, rtol=1e-5)
    assert torch.equal(backbone.vit.blocks[0].attn.relative_position_bias_table, table)


def test_sam_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="SAM's image encoder attends within"):
        ViTBackbone("samvit_base_patch16", model_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2,
                                                         "global_attn_indexes": (), "img_size": 64})


def test_other_architectures_are_refused() -> None:
    with pytest.raises(ValueError, match="not one of the plain-ViT families"):
        ViTBackbone("test_vit_relpos")


def _backbone_config(config: str) -> DictConfig:
    """A model/backbone config with its defaults (parents, grandparents) merged under it."""
    node = OmegaConf.load(CONFIGS / "model" / "backbone" / f"{config}.yaml")
    for parent in node.pop("defaults", []):
        if parent != "_self_":
            node = OmegaConf.merge(_backbone_config(parent), node)
    return node


@pytest.mark.parametrize("config", sorted(p.stem for p in (CONFIGS / "model" / "backbone").glob("*.yaml")))
def test_every_shipped_backbone_config_instantiates(config: str) -> None:
    node = _backbone_config(config)
    node.pretrained = False
    # a config naming a weights file under the data folder (vit_tiny_shapes) resolves it against the run's paths
    node = OmegaConf.create({"paths": {"data_dir": "data"}, "backbone": node}).backbone
    backbone = instantiate(node, device="meta")  # the structure only: configs name giant trunks (DINOv3 7B)
    assert backbone.name == node.name and backbone.depth >= 4
    assert backbone.out_indices[-1] == backbone.depth - 1


@pytest.mark.parametrize("name", sorted(FAMILY_MODELS))
def test_vit_adapter_runs_every_family_and_leaves_its_features_unchanged_at_initialisation(name: str) -> None:
    backbone = build(name)
    image = torch.randn(2, 3, 50, 75)
    outputs: list[torch.Tensor] = []
    for block in backbone.vit.blocks:
        block.register_forward_hook(lambda module, args, out: outputs.append(out))
    plain, adapted = encoder_for(backbone).eval(), Encoder(backbone, partial(ViTAdapterNeck, prior_channels=16)).eval()
    with torch.no_grad():
        plain(image)
        expected, outputs[:] = list(outputs), []
        pyramid = adapted(image)
    assert len(outputs) == 2 and all(torch.equal(a, b) for a, b in zip(expected, outputs))
    assert [tuple(p.shape) for p in pyramid.values()] == [(2, 32, -(-50 // s), -(-75 // s)) for s in (4, 8, 16, 32)]
