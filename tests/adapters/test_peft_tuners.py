"""LoRA, DoRA and generic peft tuners on every timm plain-ViT family: identity at start, targets, training, merging."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor, nn

from tests.helpers import CONFIGS, ROOT
from vitadapter.adapters import build_method
from vitadapter.adapters.base import MethodConfig
from vitadapter.adapters.peft_tuners import REFUSED_PEFT_TYPES, SUPPORTED_PEFT_TYPES, PeftTunerConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck

TINY = {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}
# one model per timm code path: VisionTransformer (AugReg, DeiT-III, DINOv2 +/- registers, CLIP, SigLIP with
# and without attention pool, FlexiViT), Eva (EVA-02 fused and split q/k/v + SwiGLU, PE, RoPE-ViT), Beit
FAMILIES = [
    "vit_base_patch16_224", "deit3_small_patch16_224", "vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2",
    "eva02_tiny_patch14_224", "eva02_base_patch14_224", "vit_pe_core_tiny_patch16_384", "vit_base_patch16_rope_224",
    "beit_base_patch16_224", "vit_base_patch16_clip_224", "vit_base_patch16_siglip_224",
    "vit_base_patch16_siglip_gap_224", "flexivit_small",
]
# whose qkv has separate q/v biases: timm calls F.linear(x, qkv.weight, bias) unless qkv_bias_separate
QV_BIAS_FAMILIES = {"beit_base_patch16_224", "eva02_tiny_patch14_224"}
NECK = functools.partial(MultiLevelNeck, out_channels=16, source="last")  # two taps, four levels
IMAGE = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def backbone(name: str) -> ViTBackbone:
    """A tiny random model whose LayerScales are 1 (timm starts them at 1e-6..0.1, hiding any update)."""
    model = ViTBackbone(name, model_kwargs=TINY, out_indices=[0, 1])
    with torch.no_grad():
        for param_name, param in model.vit.named_parameters():
            if param_name.rpartition(".")[2] in ("gamma", "gamma_1", "gamma_2"):
                param.fill_(1.0)
    return model


def encoder(name: str, method: MethodConfig | None) -> Encoder:
    model = Encoder(backbone(name), NECK, method).eval()
    torch.manual_seed(0)  # the same neck whatever the method drew from the generator
    model.neck.load_state_dict(NECK(in_channels=model.backbone.embed_dim, patch_size=model.backbone.patch_size)
                               .state_dict())
    return model


@torch.no_grad()
def features(model: Encoder) -> list[Tensor]:
    """The tapped tokens and the neck's pyramid."""
    return [t.x for t in model.tokens(IMAGE)] + list(model(IMAGE).values())


def max_diff(a: list[Tensor], b: list[Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def perturb(model: nn.Module, std: float, where: str = "", seed: int = 0) -> None:
    """Adds noise to the trainable tensors whose name contains `where` (a zero-initialised B then matters)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and where in name:
                param.add_(std * torch.randn(param.shape, generator=generator))


def wrapped_names(model: Encoder) -> set[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n for n, m in model.backbone.vit.named_modules() if isinstance(m, BaseTunerLayer)}


@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("name", FAMILIES)
def test_fresh_method_keeps_features_and_merges(name: str, method: str) -> None:
    plain = features(encoder(name, None))
    model = encoder(name, build_method(method))
    fresh = features(model)
    if name in QV_BIAS_FAMILIES:  # the bias is added after the matmul instead of inside it
        assert max_diff(plain, fresh) <= 1e-6
    else:
        assert all(torch.equal(a, b) for a, b in zip(plain, fresh))

    perturb(model, 0.1, "lora_")
    unmerged = features(model)
    assert max_diff(plain, unmerged) > 1e-3
    model.merge()
    assert max_diff(features(model), unmerged) <= 1e-5
    assert not wrapped_names(model) and "peft_config" not in model.backbone.vit.__dict__
    assert list(model.backbone.vit.state_dict()) == list(encoder(name, None).backbone.vit.state_dict())
    assert not any(p.requires_grad for p in model.backbone.vit.parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_qkv_update_reaches_the_output(name: str) -> None:
    """An update of qkv alone changes the features: BEiT/EVA attention must call the wrapped layer."""
    model = encoder(name, build_method("lora", target_modules=["qkv"]))
    calls = []
    for layer_name in wrapped_names(model):
        model.backbone.vit.get_submodule(layer_name).register_forward_hook(lambda *_: calls.append(1))
    before = features(model)
    assert len(calls) == 2 * len(wrapped_names(model))  # tokens() and forward() each run every wrapped layer
    perturb(model, 0.1, "lora_B")
    assert max_diff(before, features(model)) > 1e-3
    for block in model.backbone.vit.blocks:
        if getattr(block.attn, "q_bias", None) is not None:
            assert block.attn.qkv_bias_separate
    model.merge()
    assert not any(getattr(b.attn, "qkv_bias_separate", False) for b in model.backbone.vit.blocks)  # timm's again


@pytest.mark.parametrize("name", FAMILIES)
def test_targets_are_the_blocks_linear_layers_only(name: str) -> None:
    model = encoder(name, build_method("dora"))
    wrapped = wrapped_names(model)
    expected = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"}
    if name == "eva02_base_patch14_224":  # split q/k/v and SwiGLU
        expected = {"attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj", "mlp.fc1_g", "mlp.fc1_x", "mlp.fc2"}
    assert wrapped == {f"blocks.{i}.{t}" for i in range(2) for t in expected}
    assert not any(n.startswith(("patch_embed", "attn_pool", "head")) for n in wrapped)

    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    assert len(trainable) == 3 * len(wrapped)  # A, B and DoRA's magnitude per layer
    model(IMAGE).popitem()[1].square().mean().backward()
    grads = {n for n, p in model.backbone.named_parameters() if p.grad is not None}
    assert grads == set(trainable)


def test_layers_drop_below_and_train_mode() -> None:
    model = encoder("vit_base_patch16_224", build_method("lora", layers=[0, 1], drop_below=1, dropout=0.1,
                                                         target_modules="fc2"))
    assert wrapped_names(model) == {"blocks.1.mlp.fc2"}
    layer = model.backbone.vit.blocks[1].mlp.fc2
    model.train()
    assert layer.lora_dropout["default"].training and not layer.base_layer.training
    assert not model.backbone.vit.blocks[1].mlp.fc1.training  # frozen timm modules stay in eval mode
    model.eval()
    assert not layer.lora_dropout["default"].training


@pytest.mark.filterwarnings("ignore::UserWarning")  # BOFT's CUDA-kernel probe, SHiRA's sparse-tensor note
@pytest.mark.parametrize("peft_type", SUPPORTED_PEFT_TYPES)
def test_generic_peft_tuner(peft_type: str) -> None:
    """On BEiT (separate q/v biases, bias-less qkv): identity start, qkv reaches the output, training, merging."""
    name = "beit_base_patch16_224"
    options = {"init_weights": True} if peft_type in ("C3A", "FOURIERFT") else {}  # zero start, not random
    if peft_type == "C3A":
        options["block_size"] = 16
    method = build_method("peft", peft_type=peft_type.lower(), options=options)
    assert method.mergeable
    plain = features(encoder(name, None))
    model = encoder(name, method)
    assert max_diff(plain, features(model)) <= 1e-5
    assert wrapped_names(model) == {f"blocks.{i}.{t}" for i in range(2)
                                    for t in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
    trainable = [p for p in model.backbone.vit.parameters() if p.requires_grad]
    assert trainable and not any(model.backbone.is_pretrained_tensor(p) for p in trainable)

    perturb(model, 0.5, ".attn.qkv.")
    assert max_diff(plain, features(model)) > 1e-5

    model = encoder(name, method)
    perturb(model, 0.002 if peft_type == "WAVEFT" else 0.02)  # WaveFT scales its update by 25
    unmerged = features(model)

    # what a checkpoint keeps (FrozenBackboneCheckpointing): everything but the frozen ViT tensors
    saved = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()
             if not model.backbone.is_frozen_tensor(v)}
    restored = encoder(name, build_method("peft", peft_type=peft_type, options=options))
    restored.load_state_dict({**restored.state_dict(), **saved})
    assert max_diff(features(restored), unmerged) == 0.0

    model.merge()
    for merged, reference in zip(features(model), unmerged):
        torch.testing.assert_close(merged, reference, rtol=1e-5, atol=1e-5)
    assert list(model.backbone.vit.state_dict()) == list(encoder(name, None).backbone.vit.state_dict())


def test_ia3_scales_the_inputs_of_fc2_only() -> None:
    model = encoder("vit_base_patch16_224", build_method("peft", peft_type="IA3"))
    vit = model.backbone.vit
    assert vit.blocks[0].mlp.fc2.is_feedforward and not vit.blocks[0].mlp.fc1.is_feedforward


@pytest.mark.parametrize(
    "method, fields, message",
    [
        ("peft", {"peft_type": "LORA"}, "model/adapter=lora"),
        ("peft", {"peft_type": "VERA"}, "shared between layers"),
        ("peft", {"peft_type": "PREFIX_TUNING"}, "prompt method"),
        ("peft", {"peft_type": "MAGIC"}, "model.adapter.peft_type=MAGIC"),
        ("lora", {"r": 0}, "model.adapter.r"),
        ("lora", {"target_modules": []}, "model.adapter.target_modules"),
    ],
)
def test_bad_configs_name_the_key(method: str, fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_method(method, **fields)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"target_modules": ["q_proj"]}, r"target_modules: \['q_proj'\] name no Linear"),
        ({"options": {"target_modules": ["qkv"]}}, "model.adapter.options.target_modules is set by the method"),
        ({"options": {"lora_alpha": 4}}, "use model.adapter.alpha"),
        ({"options": {"rank": 4}}, r"options: \['rank'\] are not fields of peft's LoraConfig"),
        ({"options": {"bias": "all"}}, "peft unfroze pretrained tensors"),
        ({"options": {"init_lora_weights": "olora"}}, "rewrote the frozen weight"),
        ({"layers": [0], "drop_below": 1}, "leave no block"),
    ],
)
def test_bad_placements_name_the_key(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encoder("vit_base_patch16_224", build_method("lora", **fields))


def test_applying_twice_and_unmergeable_methods_are_refused() -> None:
    model = encoder("vit_base_patch16_224", build_method("lora"))
    with pytest.raises(ValueError, match="already holds peft layers"):
        build_method("lora").apply(model.backbone)
    with pytest.raises(ValueError, match="cannot be merged"):
        build_method("bottleneck", merge=True)
    assert build_method("dora", merge=True).merge


@pytest.mark.parametrize("name, cls_name, lr", [("lora", "LoraMethodConfig", 1e-3), ("dora", "DoraMethodConfig", 5e-4),
                                                ("peft", "GenericPeftConfig", 1e-3)])
def test_adapter_configs_build_their_method(name: str, cls_name: str, lr: float) -> None:
    method = instantiate(OmegaConf.load(CONFIGS / "model" / "adapter" / f"{name}.yaml"))
    assert type(method).__name__ == cls_name and isinstance(method, PeftTunerConfig)
    assert method.lr == lr and method.target_modules == ("qkv", "proj", "fc1", "fc2")


def test_generic_peft_from_the_command_line(compose_config, tmp_path: Path) -> None:
    overrides = ["model/adapter=peft", "model.adapter.peft_type=LOHA", "model.adapter.options={r: 8}"]
    method = instantiate(compose_config("train", overrides, tmp_path).model.adapter)
    assert method.peft_type == "LOHA" and method.options == {"r": 8}


def test_refusals_cover_every_installed_peft_tuner() -> None:
    import peft

    assert set(peft.PeftType.__members__) <= set(SUPPORTED_PEFT_TYPES) | set(REFUSED_PEFT_TYPES)


def test_importing_the_methods_does_not_import_peft() -> None:
    code = "import sys, vitadapter.adapters as a; a.import_all_methods(); assert 'peft' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=Path(ROOT), check=True, timeout=120)
