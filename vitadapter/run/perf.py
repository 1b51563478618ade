"""What a finished training run cost, as metrics.json reports it.

Keys (sizes in MiB, 2**20 bytes):
- `perf/train_step_ms`, `perf/train_steps_timed`, `perf/peak_memory_mb`, `perf/peak_memory_kind`:
  from the `TrainingCost` callback (see `vitadapter.callbacks.perf`).
- `perf/infer_ms_per_image`: the median over 3 timed passes (after 1 untimed) of the task's
  eval-mode forward on the first validation batch that holds images, without gradients and with the
  trainer's precision, divided by the batch's images (null when every validation image was skipped as bad). It runs on a copy of the task whose method is merged
  into the frozen weights when the method is mergeable, as it would be deployed.
- `ckpt/size_mb`: the size of the saved checkpoint.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn

from vitadapter.callbacks.perf import MIB, TrainingCost

log = logging.getLogger(__name__)


def checkpoint_size_mb(path: str | Path) -> float:
    """The file's size in MiB."""
    return Path(path).stat().st_size / MIB


def inference_copy(task: L.LightningModule) -> L.LightningModule:
    """A deep copy of the task in eval mode, its PEFT method merged when mergeable.

    The task's public non-module attributes (e.g. the COCO ground truth) are shared, not copied.
    """
    shared = {id(v): v for k, v in vars(task).items()
              if not k.startswith("_") and not isinstance(v, (nn.Module, types.MethodType))}
    clone = copy.deepcopy(task, memo=shared)
    # under DDP Lightning patches `forward` on the instance (redirecting to the wrapped original): use the class's
    vars(clone).pop("forward", None)
    method = clone.encoder.method
    if method is not None and method.mergeable:
        clone.encoder.merge()
    return clone.eval()


def _batch_forward(task: nn.Module, batch: Mapping[str, Any]) -> tuple[Callable[[], Any], int]:
    """The task's forward on a validation batch, and the batch's number of images."""
    if "images" in batch:  # detection: the detector takes a list of images
        images = batch["images"]
        return lambda: task(images), len(images)
    images = batch["image"]
    if isinstance(images, Tensor):
        return lambda: task(images), len(images)
    # segmentation validation batches are lists of differently sized images, each run alone
    return lambda: [task(image.unsqueeze(0)) for image in images], len(images)


def inference_ms_per_image(task: L.LightningModule, batch: Mapping[str, Any], device: torch.device,
                           forward_context: Callable[[], Any], repeats: int = 3,
                           clock: Callable[[], float] = time.perf_counter) -> float:
    """Median milliseconds per image of `repeats` timed forwards (after one untimed) of `task` on `batch`.

    Args:
        task: the model to time, in the mode it should run in.
        batch: a validation batch (already on `device`).
        device: where `task` and `batch` are (CUDA is synchronised around each pass).
        forward_context: the trainer's precision context (autocast for mixed precision).
        repeats: timed passes.
        clock: seconds as a float.
    """
    forward, num_images = _batch_forward(task, batch)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad(), forward_context():
        for index in range(repeats + 1):
            sync()
            start = clock()
            forward()
            sync()
            elapsed = clock() - start
            if index:
                times.append(elapsed * 1000.0 / num_images)
    return statistics.median(times)


def run_cost(trainer: L.Trainer, task: L.LightningModule, datamodule: L.LightningDataModule,
             checkpoint: str | Path) -> dict[str, Any]:
    """The `perf/*` and `ckpt/*` figures of a run whose training and final validation are over."""
    figures: dict[str, Any] = {"ckpt/size_mb": checkpoint_size_mb(checkpoint)}
    meter = next((c for c in trainer.callbacks if isinstance(c, TrainingCost)), None)
    if meter is None:
        log.warning("no TrainingCost callback configured: metrics.json gets no perf/train_step_ms nor peak memory")
    else:
        figures.update(meter.figures())
    device = trainer.strategy.root_device
    clone = inference_copy(task).to(device)
    # the first batch with images: under data.skip_bad_samples a batch, or a rank's every batch, may have none
    batch = next((b for b in datamodule.val_dataloader() if _batch_forward(clone, b)[1]), None)
    if batch is None:
        log.warning("this process has no validation image left to time (all skipped as bad): "
                    "perf/infer_ms_per_image is null here")
        figures["perf/infer_ms_per_image"] = None
        return figures
    batch = move_data_to_device(trainer.precision_plugin.convert_input(batch), device)
    figures["perf/infer_ms_per_image"] = inference_ms_per_image(clone, batch, device,
                                                                trainer.precision_plugin.forward_context)
    return figures
