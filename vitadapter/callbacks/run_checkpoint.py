"""ModelCheckpoint whose `every_n_train_steps` refreshes last.ckpt even while the monitored metric is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from vitadapter.callbacks.preemption import Preemption


def preempted(trainer: L.Trainer) -> bool:
    """Whether a `Preemption` callback stopped this run (it has saved last.ckpt at the step it stopped)."""
    return any(isinstance(c, Preemption) and c.stopped_at_step is not None for c in trainer.callbacks)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus a `last.ckpt` every `every_n_train_steps` in any case, and none
    after a preemption.

    With a `monitor`, ModelCheckpoint defers its step-triggered saves (last.ckpt included) to the next
    validation when the metric is not logged yet or the epoch is about to end, so a long run validated
    every 16k steps would have nothing to resume from before its first validation. The best-by-monitor
    files keep Lightning's behaviour. A run stopped by `Preemption` ends its epoch early; saving last.ckpt
    then (at the epoch's or the training's end) would overwrite the preemption's checkpoint with one that
    counts the epoch as complete, and a resumed run would skip the epoch's remaining batches.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not preempted(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not preempted(trainer):
            super().on_train_end(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self._every_n_train_steps
        if not self.save_last or every < 1 or trainer.global_step % every or self.dirpath is None:
            return
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or trainer.fast_dev_run:
            return
        if self._last_global_step_saved == trainer.global_step:
            return  # ModelCheckpoint itself saved this step
        trainer.save_checkpoint(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
