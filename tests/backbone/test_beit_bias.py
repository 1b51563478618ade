"""Every family at input sizes off the patch grid, and BEiT's relative-position bias: timm's resampling, never stale."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.beit import checkpoint_filter_fn

from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.inference.sliding_window import slide_inference, whole_inference
from vitadapter.necks import MultiLevelNeck

TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}
BEIT = "beit_base_patch16_224"
# one model of each family (patch 14 and 16)
FAMILIES = [BEIT, "beitv2_base_patch16_224", "deit_tiny_patch16_224", "vit_small_patch14_reg4_dinov2",
            "eva02_tiny_patch14_224", "vit_base_patch16_rope_224"]
SIZE = (50, 75)  # a whole number of patches for neither patch 14 nor 16


def encoder_for(name: str, **extra) -> Encoder:
    backbone = ViTBackbone(name, model_kwargs={**TINY, **extra}, out_indices=[0, 1, 1, 1])
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # timm starts BEiT's tables at zero (no bias at all): give them values, as pretrained ones
        for key, tensor in backbone.vit.named_parameters():
            if key.endswith("relative_position_bias_table"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return Encoder(backbone, partial(MultiLevelNeck, out_channels=8))


def padded(image: torch.Tensor, patch: int) -> torch.Tensor:
    """The image zero-padded at the bottom and right to whole patches (what the patch embedding sees)."""
    height, width = image.shape[-2:]
    return F.pad(image, (0, -width % patch, 0, -height % patch))


def last_patch_map(encoder: Encoder, image: torch.Tensor) -> torch.Tensor:
    return encoder.tokens(image)[-1].patch_map()


def beit_tables(encoder: Encoder) -> list[torch.Tensor]:
    return [block.attn.relative_position_bias_table for block in encoder.backbone.vit.blocks]


@pytest.mark.parametrize("name", FAMILIES)
def test_training_off_the_patch_grid_equals_training_on_the_padded_image(name: str) -> None:
    encoder = encoder_for(name)
    encoder.backbone.vit.requires_grad_(True)
    image = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(32, 1, 1)
    grads = []
    for view in (image, padded(image, encoder.backbone.patch_size)):
        encoder.zero_grad(set_to_none=True)
        (last_patch_map(encoder, view) * weight).sum().backward()
        grads.append({n: p.grad for n, p in encoder.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.equal(grads[0][n], grads[1][n]) and grads[0][n].isfinite().all() for n in grads[0])
    if name.startswith("beit"):  # the gradient reaches every table through the resampling
        assert all(f"backbone.vit.blocks.{i}.attn.relative_position_bias_table" in grads[0] for i in range(2))


@pytest.mark.parametrize("name", FAMILIES)
def test_whole_and_slide_inference_off_the_patch_grid_keep_no_state_between_sizes(name: str) -> None:
    encoder = encoder_for(name).eval()
    image = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    forward = lambda x: encoder(x)["s8"]  # noqa: E731
    with torch.no_grad():
        # windows of 40x56 px: a whole number of patches neither way, a grid other than the whole image's
        slide = slide_inference(forward, image, crop_size=(40, 56), stride=(10, 19), window_batch=2)
        whole = whole_inference(forward, image)
        slide_again = slide_inference(forward, image, crop_size=(40, 56), stride=(10, 19), window_batch=2)
        fresh = copy.deepcopy(encoder)  # a copy runs the whole image first, with no state from other sizes
        whole_fresh = whole_inference(lambda x: fresh(x)["s8"], image)
    assert slide.shape == whole.shape == (1, 8, *SIZE)
    assert slide.isfinite().all() and whole.isfinite().all()
    assert torch.equal(slide, slide_again) and torch.equal(whole, whole_fresh)


@pytest.mark.parametrize("variant", [{}, {"use_rel_pos_bias": False, "use_shared_rel_pos_bias": True}],
                         ids=["table_per_block", "shared_table"])
def test_beit_off_its_window_matches_timm_built_and_loaded_for_that_grid(variant: dict) -> None:
    encoder = encoder_for(BEIT, **variant)  # tables built for 224 px: a 14x14 window
    vit = encoder.backbone.vit
    image = torch.randn(1, 3, 75, 100, generator=torch.Generator().manual_seed(0))  # a 5x7 grid, padded
    # timm's own path to a 5x7 window: a model built for 80x112 px, loading the 14x14 weights through its filter
    reference = timm.create_model(BEIT, num_classes=0, img_size=(80, 112), **TINY, **variant).eval()
    reference.load_state_dict(checkpoint_filter_fn(vit.state_dict(), reference))
    resampler = encoder.backbone.family.relative_bias
    ours = {name: resampler.for_grid(module.relative_position_bias_table, (14, 14), (5, 7))
            for name, module in vit.named_modules() if getattr(module, "relative_position_bias_table", None) is not None}
    with torch.no_grad():
        timm_biases = {name: module.forward() if name == "rel_pos_bias" else module._get_rel_pos_bias()[0]
                       for name, module in reference.named_modules() if name in ours}
        expected = reference.forward_intermediates(padded(image, 16), indices=[1], intermediates_only=True)[0]
        tokens = last_patch_map(encoder, image)
    assert len(ours) == (1 if variant else 2) and ours.keys() == timm_biases.keys()
    for name, bias in ours.items():
        torch.testing.assert_close(bias, timm_biases[name], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(tokens, expected, rtol=1e-5, atol=1e-5)


def _optimiser_step(fused: bool):
    def write(encoder: Encoder) -> None:
        tables = beit_tables(encoder)
        optimiser = torch.optim.AdamW(tables, lr=0.5, fused=fused, foreach=None if fused else True)
        for table in tables:
            table.grad = torch.randn_like(table)
        optimiser.step()
    return write


def _load_state_dict(encoder: Encoder) -> None:
    vit = encoder.backbone.vit
    vit.load_state_dict({k: v.flip(0) if k.endswith("relative_position_bias_table") else v
                         for k, v in vit.state_dict().items()})


def _data_write(encoder: Encoder) -> None:
    for table in beit_tables(encoder):
        table.data.copy_(table.data.flip(0))


# the ways a table changes in place: optimisers (a fused one leaves the version counter alone), checkpoint
# loading, and writes through `.data` (outside version counting; caught for tables that train)
WRITERS = {"adamw_foreach": (_optimiser_step(False), True), "adamw_fused": (_optimiser_step(True), True),
           "load_state_dict_trainable": (_load_state_dict, True), "load_state_dict_frozen": (_load_state_dict, False),
           "data_write_trainable": (_data_write, True)}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_next_no_grad_forward_after_an_in_place_table_change_uses_the_new_table(writer: str) -> None:
    write, trainable = WRITERS[writer]
    encoder = encoder_for(BEIT)
    for table in beit_tables(encoder):
        table.requires_grad_(trainable)
    image = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = last_patch_map(encoder, image)
        write(encoder)
        after = last_patch_map(encoder, image)
        # a deep copy holds new tensors: nothing it computed before the change can apply to them
        expected = last_patch_map(copy.deepcopy(encoder), image)
    assert torch.equal(after, expected) and not torch.allclose(after, before)


def test_training_forward_after_a_no_grad_forward_sends_gradients_into_the_tables() -> None:
    encoder = encoder_for(BEIT)
    for table in beit_tables(encoder):
        table.requires_grad_(True)
    reference = copy.deepcopy(encoder)
    image = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        last_patch_map(encoder, image)  # a validation at the training grid
    for model in (encoder, reference):
        last_patch_map(model, image).square().sum().backward()
    for ours, expected in zip(beit_tables(encoder), beit_tables(reference)):
        assert ours.grad is not None and torch.equal(ours.grad, expected.grad) and ours.grad.abs().sum() > 0


def test_gradient_checkpointing_recomputes_the_same_bias() -> None:
    encoder = encoder_for(BEIT)
    encoder.backbone.vit.requires_grad_(True)
    checkpointed = copy.deepcopy(encoder)
    checkpointed.backbone.grad_checkpointing = True
    image = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    for model in (encoder, checkpointed):
        last_patch_map(model.train(), image).square().sum().backward()
    for ours, expected in zip(beit_tables(checkpointed), beit_tables(encoder)):
        assert torch.equal(ours.grad, expected.grad)
