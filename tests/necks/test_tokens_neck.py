"""The tokens neck (no spatial module): the encoder's output equals timm's own forward_intermediates."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.helpers import CONFIGS
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck, TappedTokens

TAPS = {"last": [3], "last4": [0, 1, 2, 3]}


@pytest.fixture(scope="module")
def backbones() -> dict[str, ViTBackbone]:
    """A 4-block ViT-Ti/16 per tap set, its final norm's affine made non-trivial so that applying it shows."""
    built = {}
    generator = torch.Generator().manual_seed(0)
    for name, taps in TAPS.items():
        backbone = ViTBackbone("vit_tiny_patch16_224", model_kwargs={"depth": 4}, out_indices=taps)
        with torch.no_grad():
            backbone.vit.norm.weight.copy_(1 + torch.randn(backbone.embed_dim, generator=generator))
            backbone.vit.norm.bias.copy_(torch.randn(backbone.embed_dim, generator=generator))
        built[name] = backbone
    return built


@pytest.mark.parametrize("class_token", [False, True], ids=["patches", "with_class_token"])
@pytest.mark.parametrize("final_norm", [False, True], ids=["raw", "final_norm"])
@pytest.mark.parametrize("taps", sorted(TAPS))
def test_equals_timms_forward_intermediates(backbones, taps: str, final_norm: bool, class_token: bool) -> None:
    backbone = backbones[taps]
    encoder = Encoder(backbone, partial(TappedTokens, final_norm=final_norm, class_token=class_token)).eval()
    image = torch.randn(2, 3, 50, 70, generator=torch.Generator().manual_seed(1))  # 4x5 patches, padded
    with torch.no_grad():
        pyramid = encoder(image)
        reference = backbone.vit.forward_intermediates(image, indices=TAPS[taps], norm=final_norm,
                                                       return_prefix_tokens=True, intermediates_only=True)
    parts = []
    for patches, prefix in reference:
        parts.append(patches)
        if class_token:
            parts.append(prefix[:, 0, :, None, None].expand_as(patches))
    expected = torch.cat(parts, dim=1)
    width = len(TAPS[taps]) * 192 * (2 if class_token else 1)
    assert list(pyramid) == ["s16"] and encoder.strides == (16,) and encoder.out_channels == width
    assert pyramid["s16"].shape == (2, width, 4, 5) == expected.shape
    assert torch.allclose(pyramid["s16"], expected, atol=1e-5)


def test_a_backbone_without_class_token() -> None:
    backbone = ViTBackbone("vit_tiny_patch16_224", out_indices=[0],
                           model_kwargs={"depth": 1, "class_token": False, "global_pool": "avg"})
    with pytest.raises(ValueError, match="class_token=true .* has none"):
        Encoder(backbone, partial(TappedTokens, class_token=True))
    encoder = Encoder(backbone, partial(TappedTokens, class_token=False, final_norm=False)).eval()
    image = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        (expected,) = backbone.vit.forward_intermediates(image, indices=[0], intermediates_only=True)
        assert torch.allclose(encoder(image)["s16"], expected, atol=1e-5)


def test_other_necks_are_built_as_before() -> None:
    calls = []

    def neck(**kwargs):
        calls.append(kwargs)
        return MultiLevelNeck(**kwargs, out_channels=8)

    backbone = ViTBackbone("vit_tiny_patch16_224", model_kwargs={"depth": 4}, out_indices=[0, 1, 2, 3])
    Encoder(backbone, neck)
    Encoder(backbone, partial(MultiLevelNeck, out_channels=8))
    assert calls == [{"in_channels": 192, "patch_size": 16, "depth": 4}]
    tokens = Encoder(backbone, partial(TappedTokens))
    assert tokens.neck.num_taps == 4 and tokens.out_channels == 4 * 192
    assert list(tokens.neck.parameters()) == []


def test_config_builds_the_neck_through_the_encoder(backbones) -> None:
    neck = instantiate(OmegaConf.load(CONFIGS / "model" / "neck" / "tokens.yaml"))
    encoder = Encoder(backbones["last4"], neck)
    assert isinstance(encoder.neck, TappedTokens) and encoder.neck.final_norm and not encoder.neck.class_token
    assert encoder.out_channels == 4 * 192 and encoder.strides == (16,)
