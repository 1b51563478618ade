"""Optimiser parameter groups as timm builds them, over the trainable tensors of a whole task.

Weight decay follows timm (`timm.optim.param_groups_weight_decay`): none on 1-D tensors (norms,
biases, layer scales) and on the tensors a module lists in `no_weight_decay()` (a timm ViT's class,
register and distillation tokens, position embeddings and BEiT's relative-position tables; a
method's prompts). Layer-wise lr decay follows BEiT (Bao et al., ICLR 2022), with the layer ids of
the ViT's own `group_matcher()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from timm.models import group_parameters
from timm.optim import param_groups_weight_decay
from torch import nn

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names in `model` of the tensors that its submodules list in timm's `no_weight_decay()`.

    timm's own grouping reads `no_weight_decay()` of the top module only; here the ViT sits inside
    the task (`encoder.backbone.vit`), so every submodule's list is read and prefixed with its path.
    Listed names a model does not hold (`dist_token`, a `pos_embed` that is None) are skipped.
    """
    names = set()
    for prefix, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if not callable(listed):
            continue
        for name in listed():
            try:
                module.get_parameter(name)
            except AttributeError:
                continue
            names.add(f"{prefix}.{name}" if prefix else name)
    return names


def layer_decay_scales(backbone: ViTBackbone, layer_decay: float) -> dict[int, float]:
    """BEiT's layer-wise lr multipliers of the ViT's trainable tensors, by `id(param)`.

    Layer ids come from the ViT's `group_matcher()` (embeddings 0, block i -> i + 1, and a method's
    modules inside block i share its id); the layers after the ViT (neck, heads, prompts) are
    layer `used_depth + 1` with scale 1, and tensor of layer l gets `layer_decay ** (used_depth + 1 - l)`.
    timm's `param_groups_layer_decay` is not used: it puts the top at the ViT's own last group
    (its final norm, which shares the last block's id in `VisionTransformer` but not in `Eva`/`Beit`),
    so the last block's scale would depend on the family.

    Args:
        backbone: the ViT with the method placed inside.
        layer_decay: multiplier per layer from the top, in (0, 1].

    Returns:
        The scale of every trainable tensor of the ViT.
    """
    vit = backbone.vit
    top = backbone.used_depth + 1  # blocks after the last tapped one never run
    layer_of = group_parameters(vit, vit.group_matcher(coarse=False), reverse=True)
    return {
        id(param): layer_decay ** (top - min(layer_of[name], top))
        for name, param in vit.named_parameters()
        if param.requires_grad
    }


def trainable_param_groups(
    model: nn.Module, *, weight_decay: float, param_lr: Mapping[int, float] | None = None
) -> list[dict[str, Any]]:
    """Groups the trainable parameters by weight decay (timm's rules) and learning rate.

    Args:
        model: the task (or any module); frozen parameters are left out.
        weight_decay: the decay of the tensors that decay (the optimiser's `weight_decay`).
        param_lr: learning rates by `id(param)` for parameters that do not use the optimiser's
            own lr (a method's `lr`, layer-wise decay).

    Returns:
        Param groups for a torch optimiser, each with its `weight_decay`; groups with their own
        learning rate carry `lr`.
    """
    param_lr = param_lr or {}
    groups = []
    for group in param_groups_weight_decay(model, weight_decay, no_weight_decay_list=no_weight_decay_names(model)):
        by_lr: dict[float | None, list[nn.Parameter]] = {}
        for param in group["params"]:
            by_lr.setdefault(param_lr.get(id(param)), []).append(param)
        for lr, params in by_lr.items():
            groups.append({**group, "params": params, **({} if lr is None else {"lr": lr})})
    if not groups:
        raise ValueError("the model has no trainable parameters; check model.adapter, model.neck and model.head")
    return groups
