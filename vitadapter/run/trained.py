"""Rebuilding a trained model from its checkpoint: the run config it records, then its trained tensors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L

from vitadapter.checkpoint import TrainedCheckpoint
from vitadapter.run.build import build_datamodule_and_task


def load_trained(checkpoint: str | Path | TrainedCheckpoint,
                 overrides: Sequence[str] = ()) -> tuple[L.LightningDataModule, L.LightningModule]:
    """Rebuilds the datamodule and task a train.py checkpoint was trained with and loads its weights (as eval.py).

    The datamodule is not set up (no dataset is read): it carries the evaluation preprocessing (resize,
    normalisation) and the class names and colours that predictions need.

    Args:
        checkpoint: a checkpoint written by train.py: its path, or the checkpoint already read.
        overrides: dotted `key=value` changes of the restored config (e.g. `model.backbone.checkpoint=...`
            when the pretrained weights moved).

    Returns:
        (datamodule, task), the task in eval mode with its trained tensors loaded and its frozen backbone verified.
    """
    if not isinstance(checkpoint, TrainedCheckpoint):
        checkpoint = TrainedCheckpoint.read(checkpoint)
    datamodule, task = build_datamodule_and_task(checkpoint.config(overrides))
    checkpoint.load_into(task)
    return datamodule, task.eval()
