"""VPT: prompts after the prefix tokens, shallow and deep, never in the pyramid; refused where tokens need positions."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.helpers import CONFIGS
from vitadapter.adapters import build_method
from vitadapter.adapters.vpt import Prompts, VPTConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck

NECK = partial(MultiLevelNeck, out_channels=16)
TINY = {"depth": 4, "embed_dim": 64, "num_heads": 2, "img_size": 64}
PROMPTABLE = ["vit_base_patch16_224", "vit_small_patch14_reg4_dinov2", "deit3_small_patch16_224",
              "vit_base_patch16_siglip_gap_224"]
REFUSED = {"eva02_tiny_patch14_224": "rotary position embeddings", "beit_base_patch16_224": "relative-position bias"}


def encoder(name: str, method: VPTConfig | None = None) -> Encoder:
    torch.manual_seed(0)
    return Encoder(ViTBackbone(name, model_kwargs=TINY), NECK, method).eval()


@pytest.mark.parametrize("deep", [True, False])
@pytest.mark.parametrize("name", PROMPTABLE)
def test_prompts_stay_out_of_the_pyramid_and_train(name: str, deep: bool) -> None:
    image = torch.randn(2, 3, 48, 64)
    plain, prompted = encoder(name), encoder(name, VPTConfig(num_tokens=3, deep=deep))
    prefix = plain.backbone.num_prefix_tokens
    with torch.no_grad():
        expected = plain(image)
    taps = prompted.tokens(image)
    assert [t.num_prefix_tokens for t in taps] == [prefix + 3] * 4
    assert [t.x.shape[1] for t in taps] == [prefix + 3 + t.grid[0] * t.grid[1] for t in taps]
    pyramid = prompted.neck([t.patch_map() for t in taps], image)
    assert {k: v.shape for k, v in pyramid.items()} == {k: v.shape for k, v in expected.items()}

    trainable = list(prompted.method_parameters())
    assert not any(p.requires_grad for p in prompted.backbone.parameters())
    assert sum(p.numel() for p in trainable) == 3 * (4 if deep else 1) * 64
    sum(v.square().mean() for v in pyramid.values()).backward()
    grads = prompted.hooks.prompts.grad
    assert grads is not None and all(g.abs().sum() > 0 for g in grads)  # every set of prompts gets a gradient


def test_prompts_sit_after_the_prefix_tokens_and_start_in_the_xavier_bound() -> None:
    enc = encoder("vit_small_patch14_reg4_dinov2", VPTConfig(num_tokens=2, layers=[0]))
    tokens = enc.backbone.family.embed(torch.randn(1, 3, 28, 28))  # class + 4 registers, 2x2 patches
    prompted = enc.hooks.before_block(0, tokens)
    assert torch.equal(prompted.x[:, :5], tokens.x[:, :5]) and torch.equal(prompted.x[:, 7:], tokens.x[:, 5:])
    assert torch.equal(prompted.x[0, 5:7], enc.hooks.prompts[0])  # eval mode: no prompt dropout
    bound = math.sqrt(6 / (3 * 14 * 14 + 64))
    assert enc.hooks.prompts.abs().max() <= bound and enc.hooks.prompts.abs().max() > bound / 2


def test_fresh_prompts_change_the_features_and_the_output_follows_them() -> None:
    image = torch.randn(1, 3, 48, 48)
    plain, prompted = encoder("vit_base_patch16_224"), encoder("vit_base_patch16_224", VPTConfig(num_tokens=4))
    with torch.no_grad():
        without, before = plain.tokens(image)[-1].patch_map(), prompted.tokens(image)[-1].patch_map()
        prompted.hooks.prompts.mul_(3.0)
        after = prompted.tokens(image)[-1].patch_map()
    assert not torch.allclose(without, before)  # the patches attend to the prompts (allowed by the paper)
    assert not torch.allclose(before, after)


def test_deep_prompts_replace_the_previous_ones_and_differ_from_shallow() -> None:
    image = torch.randn(1, 3, 48, 48)
    deep = encoder("vit_base_patch16_224", VPTConfig(num_tokens=4, deep=True))
    shallow = encoder("vit_base_patch16_224", VPTConfig(num_tokens=4, deep=False))
    with torch.no_grad():
        shallow.hooks.prompts.copy_(deep.hooks.prompts[:1])
        deep_taps, shallow_taps = deep.tokens(image), shallow.tokens(image)
    assert torch.equal(deep_taps[0].x, shallow_taps[0].x)  # block 0 sees the same prompts
    assert not torch.allclose(deep_taps[1].patch_map(), shallow_taps[1].patch_map())


def test_unadapted_blocks_keep_the_previous_prompt_outputs_and_drop_below_runs_without_prompts() -> None:
    image = torch.randn(1, 3, 48, 48)
    enc = encoder("vit_base_patch16_224", VPTConfig(num_tokens=2, layers=[1, 3]))
    assert isinstance(enc.hooks, Prompts) and enc.hooks.prompts.shape == (2, 2, 64)
    with torch.no_grad():
        taps = enc.tokens(image)
        kept = enc.hooks.before_block(2, taps[1])  # block 2 is not adapted: block 1's prompt outputs pass
    assert [t.num_prefix_tokens for t in taps] == [1, 3, 3, 3]
    assert kept is taps[1]

    plain = encoder("vit_base_patch16_224")
    dropped = encoder("vit_base_patch16_224", VPTConfig(num_tokens=2, drop_below=2))
    with torch.no_grad():
        expected = plain.tokens(image)
    taps = dropped.tokens(image)
    assert all(torch.equal(a.x, b.x) and a.x.grad_fn is None for a, b in zip(taps[:2], expected[:2]))
    assert dropped.hooks.prompts.shape == (2, 2, 64)


@pytest.mark.parametrize("name, reason", sorted(REFUSED.items()))
def test_models_without_positions_for_extra_tokens_are_refused(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"(?s)'vpt'.*{name}.*{reason}.*ssf"):
        encoder(name, VPTConfig())


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_tokens": 0}, "num_tokens"), ({"dropout": 1.0}, "dropout"),
     ({"deep": False, "layers": [0, 2]}, "deep=true")],
)
def test_bad_configs_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VPTConfig(**kwargs)


@pytest.mark.parametrize("config, deep", [("vpt", True), ("vpt_shallow", False)])
def test_configs_build_the_method(config: str, deep: bool) -> None:
    with initialize_config_dir(config_dir=str(CONFIGS / "model" / "adapter"), version_base="1.3"):
        method = instantiate(compose(config_name=config))
    assert isinstance(method, VPTConfig) and method.deep is deep and method.num_tokens == 50
    assert build_method("vpt", num_tokens=5).num_tokens == 5
