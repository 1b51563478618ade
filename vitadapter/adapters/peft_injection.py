"""Placing peft tuner layers on a frozen timm ViT's blocks, and folding them back into plain timm layers.

The peft library wraps Linear layers in place (`peft.inject_adapter_in_model`), so the ViT stays a
plain `nn.Module` run by the encoder's own block loop. Three traps of timm ViTs are handled here:

* peft matches `target_modules` names by suffix, so `proj` would also wrap `patch_embed.proj` and
  `fc1` SigLIP's attention-pool MLP: targets are resolved to the full names of Linear layers inside
  the adapted blocks and handed to peft as one anchored regex.
* EVA-02 has `attn.q_proj/k_proj/v_proj` (no fused `qkv`) and SwiGLU `mlp.fc1_g/fc1_x`: `qkv` and
  `fc1` also name those.
* BEiT and EVA attention with separate q/v biases call `F.linear(x, self.qkv.weight, bias)`, which
  bypasses a wrapper of `qkv`: timm's own switch `qkv_bias_separate = True` makes them call `qkv(x)`.

With the frozen weights kept in bfloat16 (`model.backbone.frozen_dtype`) peft creates the tuner's tensors in the base
layer's dtype; they are cast to float32 after injection, as peft's own models do (`cast_adapter_dtype`), so what
trains keeps full precision. Merging first turns each wrapped layer's weight into float32, so the update is added
exactly instead of being rounded away by bfloat16's 8-bit mantissa.

peft is imported inside the functions: importing it costs seconds.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone

# a target name -> the Linear layer names it stands for across timm's ViT families
TARGET_ALIASES: dict[str, tuple[str, ...]] = {
    "qkv": ("qkv", "q_proj", "k_proj", "v_proj"),
    "fc1": ("fc1", "fc1_g", "fc1_x"),
}

# attention modules switched to qkv_bias_separate=True -> their own setting, restored when merging
_ORIGINAL_QKV_BIAS_SEPARATE: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def refuse_second_tuner(backbone: ViTBackbone) -> None:
    """Raises if peft layers are already placed (their inner Linear layers would match the targets)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if any(isinstance(m, BaseTunerLayer) for m in backbone.vit.modules()):
        raise ValueError("the backbone already holds peft layers: apply one peft method per backbone")


def resolve_targets(backbone: ViTBackbone, blocks: Sequence[int], names: Sequence[str]) -> list[str]:
    """Full module names (`blocks.3.attn.qkv`) of the Linear layers that `names` designate in `blocks`.

    Args:
        backbone: the frozen ViT.
        blocks: indices of the blocks to adapt.
        names: last components of Linear layer names inside a block (`qkv`, `proj`, `fc1`, `fc2`, ...),
            with the aliases of `TARGET_ALIASES`.

    Returns:
        The names, relative to `backbone.vit`, in block order.
    """
    if not blocks:
        raise ValueError("model.adapter.layers / drop_below leave no block of the backbone to adapt")
    found: list[str] = []
    unmatched = set(names)
    for index in blocks:
        for name, module in backbone.vit.blocks[index].named_modules():
            leaf = name.rpartition(".")[2]
            hits = [t for t in names if leaf in TARGET_ALIASES.get(t, (t,))]
            if hits and isinstance(module, nn.Linear):
                found.append(f"blocks.{index}.{name}")
                unmatched.difference_update(hits)
    if unmatched:
        block = backbone.vit.blocks[blocks[0]]
        linear = sorted({n.rpartition(".")[2] for n, m in block.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(
            f"model.adapter.target_modules: {sorted(unmatched)} name no Linear layer in the adapted blocks of "
            f"{backbone.name!r}; its blocks' Linear layers are {linear} ('qkv' also means q_proj/k_proj/v_proj, "
            "'fc1' also fc1_g/fc1_x)"
        )
    return found


def anchored_regex(names: Sequence[str]) -> str:
    """A regex that peft full-matches against exactly these module names and nothing else."""
    return "^(?:" + "|".join(re.escape(n) for n in names) + ")$"


def _weight_sample(module: nn.Module) -> Tensor:
    """A strided sample of a Linear layer's weight, to detect inits that rewrite the frozen weight."""
    weight = module.weight.detach().flatten()
    return weight[:: max(1, weight.numel() // 4096)].clone()


def _route_qkv_through_module(vit: nn.Module, targets: Sequence[str]) -> None:
    """Sets `qkv_bias_separate = True` on attention whose fused `qkv` is targeted (BEiT, EVA q/v biases)."""
    for name in targets:
        parent, _, leaf = name.rpartition(".")
        attn = vit.get_submodule(parent)
        if leaf == "qkv" and hasattr(attn, "qkv_bias_separate"):
            _ORIGINAL_QKV_BIAS_SEPARATE.setdefault(attn, bool(attn.qkv_bias_separate))
            attn.qkv_bias_separate = True


def inject_tuner(backbone: ViTBackbone, config: Any, targets: Sequence[str], options_key: str) -> None:
    """Wraps exactly `targets` with the peft tuner of `config` and checks that only its tensors train.

    Args:
        backbone: the frozen ViT, with no method placed yet.
        config: a peft config whose `target_modules` is `anchored_regex(targets)`.
        targets: full names of the Linear layers to wrap (from `resolve_targets`).
        options_key: the config key users set extra peft options with (for error messages).
    """
    import peft
    from peft.tuners.tuners_utils import BaseTunerLayer, cast_adapter_dtype

    vit = backbone.vit
    samples = {name: _weight_sample(vit.get_submodule(name)) for name in targets}
    _route_qkv_through_module(vit, targets)
    peft.inject_adapter_in_model(config, vit)
    cast_adapter_dtype(vit, "default")

    wrapped = {n for n, m in vit.named_modules() if isinstance(m, BaseTunerLayer)}
    if wrapped != set(targets):
        raise RuntimeError(f"peft wrapped {sorted(wrapped ^ set(targets))[:6]} against the resolved targets")
    unfrozen = [n for n, p in vit.named_parameters() if p.requires_grad and backbone.is_pretrained_tensor(p)]
    if unfrozen:
        raise ValueError(
            f"peft unfroze pretrained tensors {unfrozen[:4]} (e.g. a `bias` option): only the tuner's own tensors "
            f"may train here; remove that setting from {options_key} (BitFit is model/adapter=bitfit)"
        )
    if not any(p.requires_grad for p in vit.parameters()):
        raise ValueError(f"the peft tuner added no trainable tensor; check {options_key} (inference_mode?)")
    narrow = sorted({str(p.dtype) for p in vit.parameters() if p.requires_grad and p.dtype != torch.float32})
    if narrow:
        raise RuntimeError(f"the peft tuner's trainable tensors are {', '.join(narrow)} after the cast to float32")
    for name, sample in samples.items():
        if not torch.equal(_weight_sample(vit.get_submodule(name).get_base_layer()), sample):
            raise ValueError(
                f"the tuner's initialisation rewrote the frozen weight of {name} (as PiSSA/OLoRA/CorDA/LoftQ-style "
                "inits do): checkpoints keep only the trained tensors and rebuild the frozen ViT from its "
                f"pretrained weights, so such a start cannot be restored; choose another init in {options_key}"
            )


def _widen_to_float32(layer: nn.Module) -> None:
    """Replaces a layer's own low-precision parameters by float32 copies, frozen (the merged layer is float32)."""
    for name, param in list(layer.named_parameters(recurse=False)):
        if param.is_floating_point() and torch.finfo(param.dtype).bits < 32:
            setattr(layer, name, nn.Parameter(param.detach().float(), requires_grad=False))


def merge_and_unwrap(vit: nn.Module) -> int:
    """Folds every peft tuner layer of `vit` into its base layer and puts the base layer back in its place.

    Afterwards `vit` is a plain timm model again (same modules and state-dict keys as timm builds). peft
    writes the merged values into the pretrained Parameter objects, which therefore stay in the backbone's
    frozen set: merge to evaluate or export, not before saving a checkpoint (it would not hold them). A layer
    kept in bfloat16 is merged into a new float32 weight instead (not in the frozen set).
    (Fresh Parameters would not help: the frozen set holds ids, which CPython reuses once the old
    Parameters are freed, so some merged weights would still count as frozen.)

    Returns:
        The number of layers merged.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    names = [n for n, m in vit.named_modules() if isinstance(m, BaseTunerLayer)]
    outermost = [n for n in names if not any(n.startswith(other + ".") for other in names)]
    for name in outermost:
        parent_name, _, leaf = name.rpartition(".")
        parent = vit.get_submodule(parent_name)
        layer = getattr(parent, leaf)
        _widen_to_float32(layer.get_base_layer())
        with torch.no_grad():
            layer.merge(safe_merge=True)
        setattr(parent, leaf, layer.get_base_layer())
    for module in vit.modules():
        if module in _ORIGINAL_QKV_BIAS_SEPARATE:
            module.qkv_bias_separate = _ORIGINAL_QKV_BIAS_SEPARATE.pop(module)
    if "peft_config" in vit.__dict__:
        del vit.peft_config  # set by peft on injection; a plain timm model has none
    return len(outermost)
