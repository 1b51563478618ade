"""Rebuilding a trained model from its checkpoint: the run config it records, then its trained tensors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import OmegaConf

from vitadapter.checkpoint import load_checkpoint_file
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.run.evaluate import read_checkpoint


def load_checkpoint_weights(task: L.LightningModule, checkpoint: str | Path | dict[str, Any]) -> None:
    """Loads a vitadapter checkpoint's trainable weights (the frozen backbone is verified, not loaded).

    Args:
        task: the task the checkpoint was trained as.
        checkpoint: its path (read with `load_checkpoint_file`, which refuses files that could run code), or
            the checkpoint already read.
    """
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint_file(checkpoint)
    task.on_load_checkpoint(checkpoint)
    task.load_state_dict(checkpoint["state_dict"])


def load_trained(ckpt_path: str | Path, overrides: Sequence[str] = ()) -> tuple[L.LightningDataModule, L.LightningModule]:
    """Rebuilds the datamodule and task a train.py checkpoint was trained with and loads its weights (as eval.py).

    The datamodule is not set up (no dataset is read): it carries the evaluation preprocessing (resize,
    normalisation) and the class names and colours that predictions need.

    Args:
        ckpt_path: a checkpoint written by train.py.
        overrides: dotted `key=value` changes of the restored config (e.g. `model.backbone.checkpoint=...`
            when the pretrained weights moved).

    Returns:
        (datamodule, task), the task in eval mode with its trained tensors loaded and its frozen backbone verified.
    """
    checkpoint = read_checkpoint(ckpt_path)
    config = OmegaConf.create(checkpoint["vitadapter"]["config"])
    if overrides:
        config = OmegaConf.merge(config, OmegaConf.from_dotlist(list(overrides)))
    datamodule, task = build_datamodule_and_task(config)
    load_checkpoint_weights(task, checkpoint)
    return datamodule, task.eval()
