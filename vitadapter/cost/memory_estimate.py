"""Will it fit? The peak memory of a training run, predicted from its config before anything is built for real.

The estimate is the sum of what the run holds at its peak, in the second training step (its forward runs beside
the first step's gradients and the optimiser state):

* **frozen weights**: every tensor that does not train (the frozen ViT in its `frozen_dtype`, BatchNorm statistics);
* **trained weights**, their **gradients** (one per trained tensor, in its dtype) and the **optimizer state** (the
  configured optimiser's, after a step: AdamW keeps two float32 moments per tensor, plus a one-element step count);
* **activations**: the bytes autograd saves for backward in one training step at the configured batch and crop,
  precision and device (parameters not counted);
* **transient**: the intermediates alive beside all of the above at the peak (a block's MLP hidden state, a
  checkpointed region recomputed in the backward pass, the loss's upsampled logits);
* **baseline** (CPU only): what a training process holds besides its tensors — the interpreter, torch, Lightning,
  timm and Hydra, the data pipeline, the allocator's free lists. It is measured, not derived: the peak resident
  set of a 2-step train.py run of a tiny model minus that model's own estimate (`scripts/benchmark_memory.py
  --baseline`), 1.12 GB on Linux x86-64 with torch 2.14 and Lightning 2.6 (the imports alone: 1.05 GB). On CUDA the
  figure is the allocator's peak (`torch.cuda.max_memory_allocated`), which holds no baseline (the CUDA context,
  ~0.5 GB, is outside it).

Everything comes from a dry run: the task built on the meta device, then two training steps (forward, backward,
optimiser) on fake tensors (`vitadapter.cost.dry_run`, `vitadapter.cost.step_memory`). It does not see a peak
outside training (a validation image much larger than the crop), what a multi-GPU strategy shards, nor an
allocator's waste (the CPU's freed heap is not always given back).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from omegaconf import DictConfig
from torch._subclasses.fake_tensor import FakeTensorMode

from vitadapter.cost.dry_run import crop_hw, fake_task, precision_name, run_device
from vitadapter.cost.step_memory import simulate_training_steps, tensor_bytes

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
    transient: int
    baseline: int

    PARTS = ("frozen_weights", "trained_weights", "gradients", "optimizer_state", "activations", "transient",
             "baseline")

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


def weight_bytes(task: torch.nn.Module) -> tuple[int, int]:
    """(frozen, trained) bytes of a module: trained = parameters that require a gradient; frozen = the other
    parameters and every buffer (each tensor once)."""
    params = list(task.parameters())
    trained = tensor_bytes(p for p in params if p.requires_grad)
    return tensor_bytes(p for p in params if not p.requires_grad) + tensor_bytes(task.buffers()), trained


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
    steps = simulate_training_steps(task, cfg, mode)
    device = run_device(cfg.trainer)
    if baseline_bytes is None:
        baseline_bytes = CPU_BASELINE_BYTES if device.type == "cpu" else 0
    held = steps.gradients + steps.optimizer_state + steps.saved
    return MemoryEstimate(
        device=device.type,
        precision=precision_name(cfg.trainer),
        batch_size=int(cfg.data.batch_size),
        crop=crop_hw(cfg.data.crop_size),
        frozen_weights=frozen,
        trained_weights=trained,
        gradients=steps.gradients,
        optimizer_state=steps.optimizer_state,
        activations=steps.saved,
        transient=max(steps.peak - held, 0),
        baseline=baseline_bytes,
    )
