"""Activation checkpointing for the trainable side modules (necks, heads), exact with BatchNorm inside.

Chen et al., "Training Deep Nets with Sublinear Memory Cost", 2016. `torch.utils.checkpoint` (non-reentrant) runs
a region keeping only its inputs and runs it again during the backward pass. A BatchNorm layer in training mode
inside the region would then fold the batch into its running mean and variance twice per step; here the
recomputation puts those statistics (and the batch count) back as the forward left them, so a checkpointed
model's state, outputs and gradients equal an unchecked one's. Dropout and drop-path draw the same numbers
again (torch restores the random state for the recomputation).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

T = TypeVar("T")


class _KeepRunningStatistics:
    """Restores the running statistics of `norms` on exit to what they were on entry (reusable, as a second
    backward through a retained graph recomputes again)."""

    def __init__(self, norms: list[_BatchNorm]) -> None:
        self.norms = norms
        self.saved: list[list[Tensor]] = []

    def __enter__(self) -> None:
        self.saved = [[buffer.clone() for buffer in _statistics(norm)] for norm in self.norms]

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for norm, saved in zip(self.norms, self.saved):
                for buffer, value in zip(_statistics(norm), saved):
                    buffer.copy_(value)
        self.saved = []


def _statistics(norm: _BatchNorm) -> list[Tensor]:
    return [b for b in (norm.running_mean, norm.running_var, norm.num_batches_tracked) if b is not None]


def checkpointing_applies(module: nn.Module, enabled: bool) -> bool:
    """Whether `module` should checkpoint now: `enabled`, in training mode and with gradients on (evaluation and
    export run it plainly)."""
    return enabled and module.training and torch.is_grad_enabled()


def checkpointed(function: Callable[..., T], *args: Any, state: nn.Module | None = None) -> T:
    """`function(*args)`, keeping only the tensors in `args` for the backward pass and recomputing the rest there.

    Args:
        function: the region (a module or a function of modules).
        *args: its arguments; the tensors among them are what the region keeps.
        state: the module holding the region's BatchNorm layers (default: `function`, when it is a module).

    Returns:
        What `function(*args)` returns.
    """
    holder = state if state is not None else function
    norms = [m for m in holder.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats] \
        if isinstance(holder, nn.Module) else []
    restore = _KeepRunningStatistics(norms)
    return checkpoint(function, *args, use_reentrant=False, context_fn=lambda: (nullcontext(), restore))
