"""Will it fit? The peak memory of a training run, predicted from its config before anything is built for real.

The estimate is the sum of what a training step holds at its peak (the start of the backward pass of a step after
the first, when the optimiser state exists):

* **frozen weights**: every tensor that does not train (the frozen ViT in its `frozen_dtype`, BatchNorm statistics);
* **trained weights**, their **gradients** (one per trained tensor, in its dtype) and the **optimizer state** (the
  configured optimiser stepped once on the trained tensors: AdamW keeps two float32 moments per tensor, plus a
  one-element step count);
* **activations**: the bytes autograd saves for backward in one training step at the configured batch and crop,
  precision and device (`vitadapter.cost.saved_bytes`; parameters not counted);
* **baseline** (CPU only): what a training process holds besides its tensors — the interpreter, torch, Lightning,
  timm and Hydra, the data pipeline, the allocator's free lists. It is measured, not derived: the peak resident
  set of a 2-step train.py run of a tiny model minus that model's own estimate (`scripts/benchmark_memory.py
  --baseline`), 1.12 GB on Linux x86-64 with torch 2.14 and Lightning 2.6 (the imports alone: 1.06 GB). On CUDA the figure is the
  allocator's peak (`torch.cuda.max_memory_allocated`), which holds no baseline (the CUDA context, ~0.5 GB, is
  outside it).

Everything is computed by a dry run (`vitadapter.cost.dry_run`): the task built on the meta device, one training
step and one optimiser step run on fake tensors. It does not see a peak outside training (a validation image much
larger than the crop) nor what a multi-GPU strategy shards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import lightning as L
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensorMode

from vitadapter.cost.dry_run import (
    crop_hw,
    dry_run_step,
    fake_task,
    forward_context,
    precision_name,
    run_device,
    training_batch,
)
from vitadapter.cost.saved_bytes import SavedBytes
from vitadapter.tasks.optim import trainable_param_groups

GB = 10**9
CPU_BASELINE_BYTES = 1_120_000_000
"""A CPU training process's resident bytes besides its tensors (see the module docstring)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """A training run's predicted peak memory, in bytes, by part (see the module docstring).

    Attributes:
        device: "cpu" (peak resident set) or "cuda" (the allocator's peak).
        precision: the trainer's precision ("32-true", "bf16-mixed", ...).
        batch_size, crop: the training batch the activations are counted for.
    """

    device: str
    precision: str
    batch_size: int
    crop: tuple[int, int]
    frozen_weights: int
    trained_weights: int
    gradients: int
    optimizer_state: int
    activations: int
    baseline: int

    PARTS = ("frozen_weights", "trained_weights", "gradients", "optimizer_state", "activations", "baseline")

    @property
    def total(self) -> int:
        """The predicted peak: the sum of the parts."""
        return sum(getattr(self, part) for part in self.PARTS)

    def report(self) -> str:
        """The parts and the total as a small table (GB = 10^9 bytes)."""
        kind = "peak resident set (RSS)" if self.device == "cpu" else "CUDA allocator peak"
        lines = [f"predicted {kind}: {self.device}, {self.precision}, batch {self.batch_size}, "
                 f"crop {self.crop[0]}x{self.crop[1]}"]
        for part in self.PARTS:
            lines.append(f"  {part.replace('_', ' '):<16} {getattr(self, part) / GB:9.3f} GB")
        lines.append(f"  {'total':<16} {self.total / GB:9.3f} GB")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        """The fields and the total, for JSON."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "total": self.total}


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """numel x element size, summed."""
    return sum(t.numel() * t.element_size() for t in tensors)


def weight_bytes(task: torch.nn.Module) -> tuple[int, int]:
    """(frozen, trained) bytes of a module: trained = parameters that require a gradient; frozen = the other
    parameters and every buffer (each tensor once)."""
    params = list(task.parameters())
    trained = tensor_bytes(p for p in params if p.requires_grad)
    return tensor_bytes(p for p in params if not p.requires_grad) + tensor_bytes(task.buffers()), trained


def configured_optimizer(task: L.LightningModule) -> torch.optim.Optimizer:
    """The task's configured optimiser over its trainable tensors, as `configure_optimizers` builds it."""
    weight_decay = task.optimizer_setting("weight_decay") or 0.0
    return task.optimizer_factory(trainable_param_groups(task, weight_decay=weight_decay,
                                                         param_lr=task.method_param_lr()))


def optimizer_state_bytes(task: L.LightningModule, mode: FakeTensorMode) -> int:
    """Bytes of the configured optimiser's state after one step on `task`'s trained tensors (fake: no memory).

    Args:
        task: a task on fake tensors of `mode` (or on real ones, with any mode).
        mode: the fake mode its tensors belong to.
    """
    optimizer = configured_optimizer(task)
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    with mode:
        for param in trained:
            param.grad = torch.zeros_like(param)
        optimizer.step()
    for param in trained:
        param.grad = None
    return tensor_bytes(t for state in optimizer.state.values() for t in state.values() if isinstance(t, Tensor))


def activation_bytes(task: L.LightningModule, cfg: DictConfig, mode: FakeTensorMode) -> int:
    """Bytes autograd saves in one training step of `task` (on fake tensors of `mode`) at the configured batch."""
    device = run_device(cfg.trainer)
    with mode:
        batch = training_batch(task, int(cfg.data.batch_size), crop_hw(cfg.data.crop_size), device)
    try:
        with mode, dry_run_step(task), forward_context(cfg, device), SavedBytes(exclude=task.parameters()) as saved:
            task.training_step(batch, 0)
    except (RuntimeError, ValueError) as error:
        raise RuntimeError(f"a training step of this config fails (train.py would fail the same way): {error}") from error
    return saved.total_bytes


def estimate_training_memory(cfg: DictConfig, baseline_bytes: int | None = None) -> MemoryEstimate:
    """The predicted peak memory of training with the composed train.yaml config `cfg` (see the module docstring).

    Args:
        cfg: the config train.py would run.
        baseline_bytes: the process baseline to add; None: `CPU_BASELINE_BYTES` on the CPU, 0 on CUDA.

    Returns:
        The estimate, by part.
    """
    mode = FakeTensorMode()
    task = fake_task(cfg, mode)
    frozen, trained = weight_bytes(task)
    device = run_device(cfg.trainer)
    if baseline_bytes is None:
        baseline_bytes = CPU_BASELINE_BYTES if device.type == "cpu" else 0
    return MemoryEstimate(
        device=device.type,
        precision=precision_name(cfg.trainer),
        batch_size=int(cfg.data.batch_size),
        crop=crop_hw(cfg.data.crop_size),
        frozen_weights=frozen,
        trained_weights=trained,
        gradients=trained,
        optimizer_state=optimizer_state_bytes(task, mode),
        activations=activation_bytes(task, cfg, mode),
        baseline=baseline_bytes,
    )
