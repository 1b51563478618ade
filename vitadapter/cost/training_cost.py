"""Lightning callback that measures what training costs: time per step and peak memory.

Time: the wall time of the first `warmup_steps + timed_steps` training batches (forward, backward
and optimiser step, from `on_train_batch_start` to `on_train_batch_end`, so data loading and
validation are not counted), with CUDA synchronised at both ends of those batches only; the reported
figure is the median after the warm-up batches. Later batches are neither timed nor synchronised, so
the measurement does not slow the rest of the run; `timed_steps=0` times nothing.

Memory (`perf/peak_memory_kind` says which of the two it is):
- `cuda_allocated`: on a CUDA device, the allocator's peak (`torch.cuda.max_memory_allocated`)
  over the training batches, MiB.
- `saved_activations_plus_params_grads_state`: elsewhere (CPU), an estimate, since a process's RSS
  also holds the data, the allocator's caches and everything before training: the bytes of the
  tensors autograd saved for backward in the first training step (counted once per storage,
  parameters excluded), plus parameters and buffers, one gradient per trainable parameter and the
  optimiser state at the end of training, MiB.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

MIB = 2**20
CUDA_KIND = "cuda_allocated"
ESTIMATE_KIND = "saved_activations_plus_params_grads_state"


def median_after_warmup(durations: Sequence[float], warmup: int) -> tuple[float | None, int]:
    """The median of `durations` after the first `warmup` ones, and how many entered it.

    A run with no more than `warmup` steps keeps its last step (at least one figure is better than
    none; the count says how much to trust it).

    Returns:
        (median, count); (None, 0) for no durations.
    """
    if not durations:
        return None, 0
    timed = list(durations[min(warmup, len(durations) - 1):])
    return statistics.median(timed), len(timed)


def _local(tensor: Tensor) -> Tensor:
    """This process's part of a tensor (a sharded DTensor's local shard; any other tensor itself)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _tensor_bytes(tensors: Any) -> int:
    return sum(_local(t).numel() * t.element_size() for t in tensors if isinstance(t, Tensor))


class SavedTensorCounter:
    """Counts the bytes autograd saves for backward while active (each storage once, `exclude` never)."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.storages: dict[int, int] = {}
        self._context: torch.autograd.graph.saved_tensors_hooks | None = None

    @property
    def total_bytes(self) -> int:
        """The bytes counted so far."""
        return sum(self.storages.values())

    def _pack(self, tensor: Tensor) -> Tensor:
        try:
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key not in self.exclude:
                self.storages[key] = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without a plain storage are not counted
            pass
        return tensor

    def start(self) -> None:
        """Starts counting (the hooks act in this thread until `stop`)."""
        self._context = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._context.__enter__()

    def stop(self) -> None:
        """Stops counting; a no-op when not counting."""
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None


class TrainingCost(L.Callback):
    """Times the training batches and measures their peak memory (see the module docstring).

    Args:
        warmup_steps: leading batches timed but left out of the median (allocator, caches, lazy set-up).
        timed_steps: batches after the warm-up that enter the median; 0 times nothing (no synchronisation).
        clock: seconds as a float (injectable for tests).
    """

    def __init__(self, warmup_steps: int = 3, timed_steps: int = 50,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if warmup_steps < 0 or timed_steps < 0:
            raise ValueError(f"callbacks.training_cost: warmup_steps ({warmup_steps}) and timed_steps ({timed_steps}) "
                             "must be >= 0")
        self.warmup_steps = warmup_steps
        self.timed_steps = timed_steps
        self.clock = clock
        self.batches_started = 0
        self.durations_ms: list[float] = []
        self.cuda_peak_bytes: int | None = None
        self.saved_bytes: int | None = None
        self.resident_bytes: int | None = None
        self._start: float | None = None
        self._counter: SavedTensorCounter | None = None

    def times(self, batch: int) -> bool:
        """Whether the `batch`-th training batch of this fit (0-based) is timed (and CUDA synchronised)."""
        return self.timed_steps > 0 and batch < self.warmup_steps + self.timed_steps

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        device = pl_module.device
        timed = self.times(self.batches_started)
        self.batches_started += 1
        if device.type == "cuda":
            # the allocator's statistics are kept on the host: reading and resetting them needs no synchronisation
            torch.cuda.reset_peak_memory_stats(device)
            if timed:
                torch.cuda.synchronize(device)
        elif self.saved_bytes is None and self._counter is None:
            self._counter = SavedTensorCounter({_local(p).untyped_storage().data_ptr() for p in pl_module.parameters()})
            self._counter.start()
        if timed:
            self._start = self.clock()

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        self._stop_counting()  # the forward is over: what backward saves is freed as it goes

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        device = pl_module.device
        if self._start is not None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.durations_ms.append((self.clock() - self._start) * 1000.0)
            self._start = None
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device)
            self.cuda_peak_bytes = max(self.cuda_peak_bytes or 0, peak)
        self._stop_counting()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = list(pl_module.parameters())
        state = [t for optimizer in trainer.optimizers for s in optimizer.state.values() for t in s.values()]
        self.resident_bytes = (_tensor_bytes(params) + _tensor_bytes(pl_module.buffers())
                               + _tensor_bytes(p for p in params if p.requires_grad) + _tensor_bytes(state))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop_counting()

    def _stop_counting(self) -> None:
        if self._counter is not None:
            self._counter.stop()
            self.saved_bytes = self._counter.total_bytes
            self._counter = None

    def figures(self) -> dict[str, float | int | str | None]:
        """`perf/train_step_ms` (median), `perf/train_steps_timed`, `perf/peak_memory_mb`, `perf/peak_memory_kind`."""
        step_ms, count = median_after_warmup(self.durations_ms, self.warmup_steps)
        if self.cuda_peak_bytes is not None:
            memory_mb, kind = self.cuda_peak_bytes / MIB, CUDA_KIND
        elif self.saved_bytes is not None and self.resident_bytes is not None:
            memory_mb, kind = (self.saved_bytes + self.resident_bytes) / MIB, ESTIMATE_KIND
        else:
            memory_mb, kind = None, None
        return {
            "perf/train_step_ms": step_ms,
            "perf/train_steps_timed": count,
            "perf/peak_memory_mb": memory_mb,
            "perf/peak_memory_kind": kind,
        }
