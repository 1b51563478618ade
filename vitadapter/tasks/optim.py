"""Optimiser parameter groups: frozen weights left out, no weight decay on norms, biases and scales."""

from __future__ import annotations

from typing import Any

from torch import nn


def trainable_param_groups(module: nn.Module) -> list[dict[str, Any]]:
    """Splits the trainable parameters into a decayed group and a no-decay group.

    Norm weights, biases and scales (every parameter with at most one dimension) get no weight
    decay, as in the ViT/BEiT segmentation recipes; frozen parameters are left out entirely.

    Args:
        module: the model.

    Returns:
        Param groups for a torch optimiser; the no-decay group carries `weight_decay=0`.
    """
    decay, no_decay = [], []
    for param in module.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if not groups:
        raise ValueError("the model has no trainable parameters; check model.adapter, model.neck and model.head")
    return groups
