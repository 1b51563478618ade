"""Stops training at the first non-finite loss, naming the step and the images of the batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def batch_image_names(batch: Mapping[str, Any]) -> list[str]:
    """The images of a batch as the datasets name them (segmentation: file stems; COCO: image ids)."""
    if "name" in batch:
        return [str(name) for name in batch["name"]]
    if "image_ids" in batch:
        return [f"image_id {int(i)}" for i in batch["image_ids"]]
    return []


def check_finite_loss(trainer: L.Trainer | None, loss: Tensor, batch: Mapping[str, Any], batch_idx: int) -> None:
    """Raises NonFiniteLossError when the loss of this rank or any other is not finite.

    Called from `training_step`, before the backward pass: the weights are still the last good
    ones and nothing after them is checkpointed. One `.item()` per step (a device sync) is all it
    costs; anomaly detection would slow every op. Under DDP the decision is collective, so all ranks
    stop at the same step instead of waiting for one another.

    Args:
        trainer: the running trainer (None outside one).
        loss: the batch's training loss.
        batch: the batch (its image names go into the message).
        batch_idx: the batch's index in the epoch.
    """
    finite = bool(torch.isfinite(loss.detach()).all().item())
    stop = not finite if trainer is None else trainer.strategy.reduce_boolean_decision(not finite, all=False)
    if not stop:
        return
    where = f"images {batch_image_names(batch)}" if not finite else "another rank's batch (its log names the images)"
    step = trainer.global_step if trainer is not None else "?"
    callback = trainer.checkpoint_callback if trainer is not None else None
    last = callback.last_model_path if callback is not None else ""
    raise NonFiniteLossError(
        f"training loss is {loss.item()} at step {step} (batch {batch_idx}), {where}. "
        f"The weights are those of the step before; last checkpoint saved: {last or 'none yet'}. "
        "Check those images and masks, lower model.optimizer.lr, or set trainer.gradient_clip_val."
    )
