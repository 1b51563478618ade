"""model.backbone.frozen_dtype=bfloat16: weight matrices stored in bfloat16, what trains in float32, the fingerprint of
the weights as loaded, runs with and without autocast, float32 masters, exact merges, checkpoints of what trains."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_seg_overrides
from vitadapter.adapters import build_method
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck
from vitadapter.run.build import build_datamodule_and_task

NECK = partial(MultiLevelNeck, out_channels=8)
TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}
FAMILIES = {  # one of each family, and DINOv3's two attention variants
    "test_vit": {},
    "vit_small_patch14_reg4_dinov2": TINY,
    "eva02_tiny_patch14_224": TINY,
    "beit_base_patch16_224": TINY,
    "vit_small_patch16_dinov3": {"depth": 2},
    "vit_small_patch16_dinov3_qkvb": {"depth": 2},
}


def _state(backbone: ViTBackbone) -> dict[str, torch.Tensor]:
    return backbone.vit.state_dict()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_bfloat16_build_is_the_float32_build_cast_bit_for_bit_with_its_fingerprint(name: str) -> None:
    full = ViTBackbone(name, seed=3, model_kwargs=FAMILIES[name], out_indices=[0, 1])
    half = ViTBackbone(name, seed=3, model_kwargs=FAMILIES[name], out_indices=[0, 1], frozen_dtype="bfloat16")
    assert half.fingerprint == full.fingerprint and half.frozen_dtype == torch.bfloat16
    full_state, half_state = _state(full), _state(half)
    assert full_state.keys() == half_state.keys()
    for key, tensor in full_state.items():
        kept = torch.bfloat16 if tensor.is_floating_point() and tensor.ndim >= 2 else tensor.dtype
        assert half_state[key].dtype == kept and torch.equal(half_state[key], tensor.to(kept)), key
    # derived buffers (RoPE periods, index tables) stay as timm makes them
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(full.vit.buffers(), half.vit.buffers()))


def test_a_run_without_autocast_computes_in_the_input_dtype() -> None:
    image = torch.randn(2, 3, 40, 56)
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        encoder = Encoder(ViTBackbone("test_vit", frozen_dtype=dtype), NECK).eval()
        with torch.no_grad():
            outputs[dtype] = encoder(image)
            taps = encoder.tokens(image)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                autocast = encoder(image)
        assert all(tap.x.dtype == torch.float32 for tap in taps)
        assert all(level.isfinite().all() for level in autocast.values())
    for key, full in outputs["float32"].items():
        half = outputs["bfloat16"][key]
        assert half.dtype == torch.float32
        assert 0 < (half - full).abs().max() <= 0.03 * full.abs().max()  # bfloat16 weights: close, not equal


def test_unfrozen_weights_train_as_float32_masters_of_the_stored_values() -> None:
    backbone = ViTBackbone("test_vit", frozen_dtype="bfloat16")
    stored = {name: t.clone() for name, t in backbone.vit.named_parameters()}
    encoder = Encoder(backbone, NECK, build_method("full"))
    trained = dict(backbone.vit.named_parameters())
    assert trained.keys() == stored.keys()
    used = {n for n, p in trained.items() if p.requires_grad}
    assert used == {n for n in stored if not n.startswith(("norm.", "fc_norm.", "head"))}
    for name in used:
        param = trained[name]
        assert param.dtype == torch.float32 and torch.equal(param, stored[name].float())
        assert backbone.is_pretrained_tensor(param) and not backbone.is_frozen_tensor(param)
    assert not {n for n, _, _, _ in backbone.frozen_tensor_slots()} & used
    sum(level.square().mean() for level in encoder.train()(torch.randn(1, 3, 32, 32)).values()).backward()
    assert all(trained[name].grad is not None for name in used)


def test_bitfit_and_norm_train_the_float32_vectors_in_place() -> None:
    for method, suffix in (("bitfit", "bias"), ("norm", "weight")):
        backbone = ViTBackbone("test_vit", frozen_dtype="bfloat16")
        before = {n: p for n, p in backbone.vit.named_parameters()}
        Encoder(backbone, NECK, build_method(method))
        trained = [n for n, p in backbone.vit.named_parameters() if p.requires_grad]
        assert trained and all(before[n] is dict(backbone.vit.named_parameters())[n] for n in trained)
        assert all(before[n].dtype == torch.float32 for n in trained) and any(n.endswith(suffix) for n in trained)


def test_lora_merges_exactly_into_a_bfloat16_base() -> None:
    torch.manual_seed(0)
    encoder = Encoder(ViTBackbone("test_vit", frozen_dtype="bfloat16"), NECK, build_method("lora")).eval()
    with torch.no_grad():
        for param in encoder.method_parameters():
            param.normal_(0, 0.02)
    layer = encoder.backbone.vit.blocks[0].attn.qkv
    base, delta = layer.get_base_layer().weight.detach().clone(), layer.get_delta_weight("default").detach()
    assert base.dtype == torch.bfloat16 and delta.dtype == torch.float32
    image = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        unmerged = encoder(image)
        encoder.merge()
        merged = encoder(image)
    weight = encoder.backbone.vit.blocks[0].attn.qkv.weight
    assert weight.dtype == torch.float32 and torch.equal(weight, base.float() + delta)  # the update is not rounded away
    assert all((merged[k] - unmerged[k]).abs().max() <= 0.01 * unmerged[k].abs().max() for k in merged)


def test_tasks_share_frozen_weights_of_one_dtype_only() -> None:
    shared: dict[str, torch.Tensor] = {}
    first, second = (ViTBackbone("test_vit", frozen_dtype="bfloat16") for _ in range(2))
    first.adopt_frozen_tensors(shared)
    second.adopt_frozen_tensors(shared)
    assert all(a is b for a, b in zip(first.vit.parameters(), second.vit.parameters()))
    with pytest.raises(ValueError, match="same model.backbone.frozen_dtype"):
        ViTBackbone("test_vit").adopt_frozen_tensors(shared)


def test_checkpoint_of_a_bfloat16_run_holds_what_trains_and_loads_onto_float32(compose_config, seg_data_root: Path,
                                                                               tmp_path: Path) -> None:
    def build(dtype: str):
        overrides = ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root), "model/adapter=lora",
                     f"model.backbone.frozen_dtype={dtype}"]
        torch.manual_seed(0)
        return build_datamodule_and_task(compose_config("train", overrides, tmp_path / dtype))[1]

    half, full = build("bfloat16"), build("float32")
    assert half.backbone.fingerprint == full.backbone.fingerprint
    with torch.no_grad():
        for param in half.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    checkpoint = {"state_dict": half.state_dict()}
    half.on_save_checkpoint(checkpoint)
    trained = {n for n, p in half.named_parameters() if p.requires_grad}
    assert set(checkpoint["state_dict"]) - {n for n, _ in half.named_buffers()} == trained
    assert all(t.dtype == torch.float32 for t in checkpoint["state_dict"].values() if t.is_floating_point())
    full.on_load_checkpoint(checkpoint)  # same fingerprint: the float32 build accepts it
    full.load_state_dict(checkpoint["state_dict"])
    image = torch.randn(1, 3, 64, 64)
    half.eval(), full.eval()
    with torch.no_grad():
        assert (half(image) - full(image)).abs().max() <= 0.05 * full(image).abs().max()
