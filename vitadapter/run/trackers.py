"""Experiment trackers: the MLflow logger on a local file store, and pictures sent to whichever trackers are active.

TensorBoard, Weights & Biases and MLflow each take pictures their own way; `log_pictures` hides that.
The trackers' packages are imported by Lightning's loggers when one is built, never here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from PIL import Image

log = logging.getLogger(__name__)


def mlflow_logger(**kwargs: Any) -> MLFlowLogger:
    """Lightning's `MLFlowLogger`, allowed to write a local file store (a `file:` tracking URI).

    MLflow 3 refuses its file store unless `MLFLOW_ALLOW_FILE_STORE=true` ("maintenance mode"); this sets
    that default for `file:` URIs only, so a database or server URI behaves exactly as MLflow makes it.

    Args:
        **kwargs: `MLFlowLogger`'s arguments (`experiment_name`, `tracking_uri`, `run_name`, `tags`, ...).

    Returns:
        The logger.
    """
    if str(kwargs.get("tracking_uri") or "").startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(**kwargs)


def log_pictures(loggers: Sequence[Logger], tag: str, pictures: dict[str, Path], step: int) -> None:
    """Sends PNG files to every tracker among `loggers` that takes pictures.

    TensorBoard and W&B: one image per name under `<tag>/<name>` (a slider over steps; one key per
    image, as pictures of several sizes under one key display badly); MLflow: the files as artifacts
    in `<tag>/step_<step>/`.
    Other loggers (CSV) are skipped: the files themselves are the record.

    Args:
        loggers: the trainer's loggers.
        tag: the key the pictures go under (e.g. `val/overlays`).
        pictures: name -> PNG file.
        step: the training step they belong to.
    """
    if not pictures:
        return
    arrays = {name: np.asarray(Image.open(path).convert("RGB")) for name, path in pictures.items()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            for name, array in arrays.items():
                logger.experiment.add_image(f"{tag}/{name}", array, global_step=step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            for name, array in arrays.items():
                logger.log_image(key=f"{tag}/{name}", images=[array], step=step)
        elif isinstance(logger, MLFlowLogger):
            for path in pictures.values():
                logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=f"{tag}/step_{step}")
        else:
            log.debug("%s takes no pictures; they are in the run directory", type(logger).__name__)
