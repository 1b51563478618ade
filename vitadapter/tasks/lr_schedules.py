"""Per-step learning-rate schedules: linear warm-up, then poly, step or cosine decay.

Poly is the mmseg segmentation recipe (warm-up 1500 iterations from 1e-6×lr, power 1.0). The step
schedule is the one of ViTDet (Li et al., ECCV 2022) and detectron2's LSJ recipes: warm-up over 250
iterations from 0.001×lr, then ×0.1 at 88.9% and 96.3% of training.

The step schedule is torch's `LinearLR` chained with `MultiStepLR`. Poly and cosine stay written out
here: they end at `min_lr_ratio`×lr of each parameter group, which torch's `PolynomialLR` (no floor)
and `CosineAnnealingLR` (one absolute `eta_min` for every group, while layer decay and a method's
own lr give groups different lrs) cannot express. With `min_lr_ratio=0` they equal torch's
`LinearLR` followed by `PolynomialLR` or `CosineAnnealingLR` (tested to 1e-12 at every step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ChainedScheduler, LambdaLR, LinearLR, MultiStepLR


def _check(total_steps: int, warmup_steps: int) -> int:
    if total_steps < 1:
        raise ValueError(f"the schedule needs total_steps >= 1, got {total_steps}; set trainer.max_steps")
    return min(warmup_steps, total_steps)


def _warmup(step: int, warmup_steps: int, warmup_ratio: float) -> float:
    return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps


def _decay_progress(step: int, warmup_steps: int, total_steps: int) -> float:
    """Fraction (0..1) of the post-warm-up part of the run done at `step`."""
    return min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))


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
    warmup_steps = _check(total_steps, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps, warmup_ratio)
        progress = _decay_progress(step, warmup_steps, total_steps)
        return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress) ** power

    return LambdaLR(optimizer, factor)


def warmup_step_schedule(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 250,
    warmup_ratio: float = 0.001,
    milestones: Sequence[float] = (0.889, 0.963),
    gamma: float = 0.1,
) -> ChainedScheduler:
    """Linear warm-up from `warmup_ratio`×lr, then the lr times `gamma` at each milestone.

    A milestone inside the warm-up drops the warming-up lr too (the two factors multiply).

    Args:
        optimizer: the optimiser whose groups' lr are scaled.
        total_steps: optimiser steps of the whole run.
        warmup_steps: length of the linear warm-up (clipped to total_steps).
        warmup_ratio: lr factor at step 0, in (0, 1].
        milestones: fractions of total_steps where the lr drops.
        gamma: factor applied at every milestone.

    Returns:
        torch's LinearLR (when warmup_steps > 0) and MultiStepLR, stepped together.
    """
    warmup_steps = _check(total_steps, warmup_steps)
    if any(not 0.0 < m <= 1.0 for m in milestones):
        raise ValueError(f"milestones are fractions of the run in (0, 1], got {list(milestones)}")
    if warmup_steps and not 0.0 < warmup_ratio <= 1.0:  # torch's LinearLR cannot start at 0
        raise ValueError(f"model.scheduler.warmup_ratio must be in (0, 1] for the step schedule, got {warmup_ratio}")
    drops = sorted(round(m * total_steps) for m in milestones)
    schedulers = []
    if warmup_steps:  # built only when used: constructing it already scales the lr
        schedulers.append(LinearLR(optimizer, start_factor=warmup_ratio, end_factor=1.0, total_iters=warmup_steps))
    schedulers.append(MultiStepLR(optimizer, drops, gamma))
    return ChainedScheduler(schedulers, optimizer)


def warmup_cosine_schedule(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 250,
    warmup_ratio: float = 0.001,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up from `warmup_ratio`×lr, then half a cosine down to `min_lr_ratio`×lr.

    Args:
        optimizer: the optimiser whose groups' lr are scaled.
        total_steps: optimiser steps of the whole run.
        warmup_steps: length of the linear warm-up (clipped to total_steps).
        warmup_ratio: lr factor at step 0.
        min_lr_ratio: lr factor reached at the last step.

    Returns:
        A per-step LambdaLR.
    """
    warmup_steps = _check(total_steps, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps, warmup_ratio)
        progress = _decay_progress(step, warmup_steps, total_steps)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
