"""Lightning callback that turns SIGTERM/SIGUSR1 (preemption by SLURM, spot instances) into a checkpoint and a stop."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment

log = logging.getLogger(__name__)


class Preemption(L.Callback):
    """On a signal in `signals`, saves `path` after the current training step and stops training.

    The handlers are installed at `on_train_start`, after Lightning has installed its own SIGTERM
    handler (which would raise `SIGTERMException` and, under DDP, kill the other ranks), and the
    previous ones are restored at `on_train_end`. The handler only sets a flag. After every optimiser
    step the ranks agree whether any of them was signalled (`reduce_boolean_decision`: some launchers
    signal only rank 0), so that all of them save the same step and stop together.

    Under SLURM, SIGUSR1 is left to the requeue handler already there (submitit's, from
    `hydra/launcher=slurm`, or Lightning's `SLURMEnvironment` auto-requeue); SIGTERM is still handled.

    Attributes:
        signal_name: the signal that stopped training, None while none did.
        stopped_at_step: the global step saved to `path` when stopped, else None.
    """

    def __init__(self, path: str | Path, signals: tuple[str, ...] | list[str] = ("SIGTERM", "SIGUSR1")) -> None:
        """
        Args:
            path: the checkpoint written when stopped (train.py's `checkpoints/last.ckpt`).
            signals: names of the signals handled while training runs.
        """
        self.path = Path(path)
        self.signals = [signal.Signals[name] for name in signals]
        self.signal_name: str | None = None
        self.stopped_at_step: int | None = None
        self._received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self._received = signal.Signals(signum)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received, self.signal_name, self.stopped_at_step = None, None, None
        if threading.current_thread() is not threading.main_thread():
            log.warning("preemption handlers not installed: training does not run in the main thread")
            return
        signals = [s for s in self.signals if not (s == signal.SIGUSR1 and SLURMEnvironment.detect())]
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        if trainer.is_global_zero:
            log.info("on %s: save %s after the current step and stop", "/".join(s.name for s in signals), self.path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.stopped_at_step is not None or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # stop only after an optimiser step: a checkpoint holds no half-accumulated gradients
        if not trainer.strategy.reduce_boolean_decision(self._received is not None, all=False):
            return
        trainer.save_checkpoint(self.path)
        trainer.should_stop = True
        # Lightning validates when should_stop is set (for early stopping): no time for that when preempted
        trainer.limit_val_batches = 0
        self.stopped_at_step = trainer.global_step
        # a rank that was not signalled itself learns only that one was
        self.signal_name = self._received.name if self._received is not None else "a signal to another rank"
        if trainer.is_global_zero:
            log.warning("preempted by %s at step %d: saved %s; resume with the same overrides plus ckpt_path=%s",
                        self.signal_name, self.stopped_at_step, self.path, self.path.resolve())
        else:
            log.info("rank %d: stopped by %s at step %d", trainer.global_rank, self.signal_name, self.stopped_at_step)

    def _restore(self) -> None:
        while self._previous:
            signum, handler = self._previous.popitem()
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: not set from Python

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
