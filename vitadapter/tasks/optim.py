"""Optimiser parameter groups: frozen weights left out, no weight decay on norms, biases and scales."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def trainable_param_groups(module: nn.Module, param_lr: Mapping[int, float] | None = None) -> list[dict[str, Any]]:
    """Groups the trainable parameters by weight decay and learning rate.

    Norm weights, biases, scales and prompt-free vectors (every parameter with at most one
    dimension) get no weight decay, as in the ViT/BEiT segmentation recipes; frozen parameters are
    left out entirely.

    Args:
        module: the model.
        param_lr: learning rates by `id(param)` for parameters that do not use the optimiser's
            own lr (a PEFT method's `lr`, layer-wise decay).

    Returns:
        Param groups for a torch optimiser; no-decay groups carry `weight_decay=0`, groups with
        their own learning rate carry `lr`.
    """
    param_lr = param_lr or {}
    groups: dict[tuple[bool, float | None], list[nn.Parameter]] = {}
    for param in module.parameters():
        if param.requires_grad:
            groups.setdefault((param.ndim <= 1, param_lr.get(id(param))), []).append(param)
    if not groups:
        raise ValueError("the model has no trainable parameters; check model.adapter, model.neck and model.head")
    result = []
    for (no_decay, lr), params in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or 0.0)):
        group: dict[str, Any] = {"params": params}
        if no_decay:
            group["weight_decay"] = 0.0
        if lr is not None:
            group["lr"] = lr
        result.append(group)
    return result
