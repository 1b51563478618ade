"""What two training steps hold beyond the weights, run as train.py runs them, on fake tensors (no memory).

Lightning's order per step: the training step (forward and loss), the gradients of the step before set to None,
the backward pass, the optimiser step. The second step is the heavier one: its forward runs beside the first
step's gradients and the optimiser state the first step made. Bytes saved for backward are counted by
`SavedBytes`, everything alive at once by `LiveBytes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException, FakeTensorMode

from vitadapter.cost.dry_run import dry_run_step, forward_context, simulated_device, training_batch
from vitadapter.cost.live_bytes import LiveBytes
from vitadapter.cost.saved_bytes import SavedBytes
from vitadapter.tasks.optim import trainable_param_groups


@dataclass(frozen=True)
class StepMemory:
    """Bytes of two training steps beyond the weights.

    Attributes:
        saved: what one step's forward saves for backward (the parameters not counted).
        gradients: one gradient per trained tensor.
        optimizer_state: the optimiser's state after a step.
        peak: the most bytes alive at once over both steps (the three above, each while it lives, and the
            intermediates alive beside them).
    """

    saved: int
    gradients: int
    optimizer_state: int
    peak: int


def tensor_bytes(tensors: object) -> int:
    """numel x element size, summed over the tensors of an iterable (anything else skipped)."""
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, Tensor))


def configured_optimizer(task: L.LightningModule) -> torch.optim.Optimizer:
    """The task's configured optimiser over its trainable tensors, as `configure_optimizers` builds it."""
    weight_decay = task.optimizer_setting("weight_decay") or 0.0
    return task.optimizer_factory(trainable_param_groups(task, weight_decay=weight_decay,
                                                         param_lr=task.method_param_lr()))


def simulate_training_steps(task: L.LightningModule, cfg: DictConfig, mode: FakeTensorMode) -> StepMemory:
    """Runs two training steps of `task` (on fake tensors of `mode`) at the configured batch, crop and precision.

    Raises:
        RuntimeError: the step fails (train.py would fail the same way), with the reason.
        NotImplementedError: the step needs the tensors' values (a loss that matches predictions to targets).
    """
    device = simulated_device(cfg.trainer)
    optimizer = configured_optimizer(task)
    weights = [*task.parameters(), *task.buffers()]
    live = LiveBytes(exclude=weights)
    try:
        with mode, live:
            batch = training_batch(task, cfg.data, device)
            for step in range(2):
                with dry_run_step(task), forward_context(cfg, device), SavedBytes(exclude=weights) as saved:
                    loss = task.training_step(batch, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                del loss
                optimizer.step()
    except NotImplementedError:
        raise
    except (DataDependentOutputException, DynamicOutputShapeException) as error:
        raise NotImplementedError(
            f"the memory estimate runs the training step on fake tensors, without values, and this config's loss "
            f"depends on them ({error}; e.g. Mask2Former's matching of queries to masks): measure two steps instead: "
            f"train.py ... trainer.max_steps=2 writes perf/peak_memory_mb to metrics.json (the CUDA peak on a GPU), "
            f"and /usr/bin/time -v gives the peak RSS on a CPU") from error
    except (RuntimeError, ValueError) as error:
        raise RuntimeError(f"a training step of this config fails (train.py would fail the same way): {error}") \
            from error
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    state = [t for s in optimizer.state.values() for t in s.values()]
    return StepMemory(saved=saved.total_bytes, gradients=tensor_bytes(p.grad for p in trained),
                      optimizer_state=tensor_bytes(state), peak=live.peak)
