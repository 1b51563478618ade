"""`trainer=fsdp`: a frozen trunk larger than one GPU, sharded across the processes with FSDP2.

`FrozenTrunkFSDP` is Lightning's `ModelParallelStrategy` used as plain data parallelism: a 1-D mesh over every
process, on which the task shards itself (`configure_model` -> `vitadapter.tasks.sharding`). What it changes is the
checkpoint: Lightning would gather the whole model, frozen trunk included, onto rank 0; here only what trains is
gathered, so a checkpoint holds exactly what a single-device run's holds (the frozen weights' fingerprint instead of
the weights) and eval.py, predict.py and `init_from` read it on one device. The optimiser state is saved whole, keyed
by parameter name: a run resumes (`ckpt_path=`) with this strategy. Evaluation runs in lock-step across the
processes (`vitadapter.run.lockstep`), since every forward is a collective.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import ModelParallelStrategy
from lightning.pytorch.trainer.states import TrainerFn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.constants import default_pg_timeout
from torch.distributed.tensor import DTensor

from vitadapter.checkpoint import load_checkpoint_file
from vitadapter.run.lockstep import Lockstep, LockstepCallback

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class FrozenTrunkFSDP(ModelParallelStrategy):
    """FSDP2 across every process (data parallel), saving single-file checkpoints of what trains only.

    Args:
        process_group_backend: "nccl" on GPUs (the default there), "gloo" for CPU processes.
        timeout: of the collective operations.
    """

    def __init__(self, process_group_backend: str | None = None, timeout: timedelta = default_pg_timeout) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, save_distributed_checkpoint=False,
                         process_group_backend=process_group_backend, timeout=timeout)
        self.lockstep: Lockstep | None = None

    def setup(self, trainer: L.Trainer) -> None:
        """Lightning's setup (the task shards itself in `configure_model`), then evaluation in lock-step
        (`vitadapter.run.lockstep`): its callback first, before any epoch-end collective."""
        task = self.lightning_module
        if not hasattr(task, "predict_probabilities") and not hasattr(task, "predict_depth"):
            raise NotImplementedError(f"trainer=fsdp trains segmentation and depth tasks, not {type(task).__name__}: "
                                      "their evaluation runs through the task's forward, which keeps the processes "
                                      "in step (a detector's, an instance or a panoptic task's do not); use trainer=ddp")
        super().setup(trainer)
        if self.lockstep is None:
            self.lockstep = Lockstep(self.lightning_module)
            trainer.callbacks.insert(0, LockstepCallback(self.lockstep))

    def evaluation_lockstep(self) -> AbstractContextManager[None]:
        """A context whose evaluation forwards run in lock-step (the inference timing after training)."""
        return self.lockstep.evaluating() if self.lockstep is not None else nullcontext()

    def setup_environment(self) -> None:
        """Every process is a data-parallel rank (Lightning's default would make them tensor-parallel)."""
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The task's trained tensors (and buffers), gathered whole onto the CPU of every rank; no frozen weight."""
        task = self.lightning_module
        frozen = set(task.frozen_state_keys())
        return {key: _whole(value) for key, value in task.state_dict().items() if key not in frozen}

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimiser's state gathered whole, keyed by parameter name."""
        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        return get_optimizer_state_dict(self.model, optimizer, options=FULL)

    def load_checkpoint(self, checkpoint_path: _PATH, weights_only: bool | None = None) -> dict[str, Any]:
        """Reads a checkpoint file (with the safe reader) into the sharded task: its trained tensors, and when
        fitting its optimiser state; the frozen weights stay as built (the task verifies their fingerprint)."""
        path = Path(self.broadcast(checkpoint_path))
        checkpoint = load_checkpoint_file(path)
        task = self.lightning_module
        frozen = set(task.frozen_state_keys())
        trained = {key for key in task.state_dict() if key not in frozen}
        state = checkpoint["state_dict"]
        if set(state) != trained:
            missing, extra = sorted(trained - set(state)), sorted(set(state) - trained)
            raise ValueError(f"{path} does not hold what this model trains: missing {missing[:5]}, "
                             f"not trained here {extra[:5]}")
        set_model_state_dict(self.model, state, options=StateDictOptions(full_state_dict=True, strict=False))
        if task.trainer.state.fn == TrainerFn.FITTING and checkpoint.get("optimizer_states"):
            for optimizer, optimizer_state in zip(self.optimizers, checkpoint["optimizer_states"]):
                set_optimizer_state_dict(self.model, optimizer, optimizer_state, options=FULL)
        return checkpoint


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded tensor gathered whole (a collective: every rank calls it), on the CPU."""
    return (tensor.full_tensor() if isinstance(tensor, DTensor) else tensor).detach().cpu()
