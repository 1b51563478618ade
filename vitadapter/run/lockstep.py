"""Evaluation in lock-step across sharded processes (`trainer=fsdp`).

Under FSDP every forward gathers each unit's weights from all processes, a collective that every rank must join.
Training steps are even (each rank gets the same number of batches), but evaluation is not: validation gives each
image to exactly one rank (ranks may hold one image more, or none), and sliding windows give images of other sizes
other numbers of forwards. So each evaluation forward of the task is announced first (an all-reduce of 1), and a
rank out of work keeps answering (an all-reduce of 0, then a forward of a small blank image, discarded) for as long
as another rank still announces forwards; when every rank answers 0, all leave together. (The epoch's end, not the
loader's, is where a rank is out of work: Lightning fetches one batch ahead.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

BLANK_SIZE = 64
"""Side of the blank image of an answering forward (any size runs the same units)."""


class Lockstep:
    """Keeps the evaluation forwards of `task` in step across the processes of the default process group.

    Args:
        task: the sharded task; its `forward` is the evaluation forward (training steps call its parts).
    """

    def __init__(self, task: nn.Module) -> None:
        self.task = task
        self.active = False
        self._answering = False
        task.register_forward_pre_hook(self._announce)

    def _agree(self, flag: int) -> bool:
        """All-reduces `flag` (1: this rank runs a forward next); whether any rank does."""
        device = next(self.task.parameters()).device
        total = torch.tensor([flag], device=device)
        dist.all_reduce(total)
        return bool(total.item())

    def _announce(self, module: nn.Module, args: Any) -> None:
        if self.active and not self._answering:
            self._agree(1)

    def finish(self) -> int:
        """Answers the other ranks' forwards until none is left; returns how many blank forwards ran here."""
        if not self.active:
            return 0
        self._answering = True
        answered = 0
        try:
            device = next(self.task.parameters()).device
            blank = torch.zeros(1, 3, BLANK_SIZE, BLANK_SIZE, device=device)
            while self._agree(0):
                with torch.no_grad():
                    self.task(blank)
                answered += 1
        finally:
            self._answering = False
            self.active = False
        return answered

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Evaluation forwards inside are in lock-step; at the end this rank answers until every rank is done."""
        self.active = True
        try:
            yield
        finally:
            self.finish()


class LockstepCallback(L.Callback):
    """Puts every validation and test epoch in lock-step: on from the epoch's start (on every rank, those without a
    batch too) to its end, where each rank answers the others before any epoch-end collective (metric and bad-file
    gathering); first among the callbacks for that reason."""

    def __init__(self, lockstep: Lockstep) -> None:
        self.lockstep = lockstep

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lockstep.active = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lockstep.finish()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lockstep.active = True

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lockstep.finish()
