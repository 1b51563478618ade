"""Optimiser parameter groups and the warm-up + poly learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


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


def warmup_poly_schedule(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 1500,
    warmup_ratio: float = 1e-6,
    power: float = 1.0,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up from `warmup_ratio`×lr, then polynomial decay to `min_lr_ratio`×lr.

    Args:
        optimizer: the optimiser whose groups' lr are scaled.
        total_steps: optimiser steps of the whole run.
        warmup_steps: length of the linear warm-up (clipped to total_steps).
        warmup_ratio: lr factor at step 0.
        power: exponent of the poly decay (1.0 = linear).
        min_lr_ratio: lr factor reached at the last step.

    Returns:
        A per-step LambdaLR.
    """
    if total_steps < 1:
        raise ValueError(f"the schedule needs total_steps >= 1, got {total_steps}; set trainer.max_steps")
    warmup_steps = min(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress) ** power

    return LambdaLR(optimizer, factor)


SchedulerFactory = Callable[..., LambdaLR]
