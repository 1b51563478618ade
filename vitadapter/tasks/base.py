"""What every task shares: frozen-backbone checkpoints and an optimiser over trainable parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from vitadapter.tasks.frozen_checkpoint import FrozenBackboneCheckpointing
from vitadapter.tasks.optim import trainable_param_groups


class FrozenBackboneTask(FrozenBackboneCheckpointing, L.LightningModule):
    """Base LightningModule of the tasks; subclasses set `backbone` and the two factories.

    Attributes:
        optimizer_factory: builds the optimiser from parameter groups (a Hydra partial).
        scheduler_factory: builds the per-step lr schedule from the optimiser and `total_steps`, or None.
    """

    optimizer_factory: Callable[..., torch.optim.Optimizer]
    scheduler_factory: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (or the configured optimiser) over trainable parameters only, lr stepped every step."""
        optimizer = self.optimizer_factory(trainable_param_groups(self))
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
