"""What a finished training run cost, as metrics.json reports it.

Keys (sizes in MiB, 2**20 bytes):
- `perf/train_step_ms`, `perf/train_steps_timed`, `perf/peak_memory_mb`, `perf/peak_memory_kind`:
  from the `TrainingCost` callback (see `vitadapter.cost.training_cost`).
- `perf/infer_ms_per_image`: milliseconds per image of the inference validation runs, timed on the
  first validation batch that holds images (see `vitadapter.cost.inference_cost`). Null when every
  validation image was skipped as bad.
- `ckpt/size_mb`: the size of the saved checkpoint.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L

from vitadapter.cost.inference_cost import configured_inference, inference_ms_per_image
from vitadapter.cost.training_cost import MIB, TrainingCost

log = logging.getLogger(__name__)


def checkpoint_size_mb(path: str | Path) -> float:
    """The file's size in MiB."""
    return Path(path).stat().st_size / MIB


def run_cost(trainer: L.Trainer, task: L.LightningModule, datamodule: L.LightningDataModule,
             checkpoint: str | Path) -> dict[str, Any]:
    """The `perf/*` and `ckpt/*` figures of a run whose training and final validation are over."""
    figures: dict[str, Any] = {"ckpt/size_mb": checkpoint_size_mb(checkpoint)}
    meter = next((c for c in trainer.callbacks if isinstance(c, TrainingCost)), None)
    if meter is None:
        log.warning("no TrainingCost callback configured: metrics.json gets no perf/train_step_ms nor peak memory")
    else:
        figures.update(meter.figures())
    # the first batch with images: under data.skip_bad_samples a batch, or a rank's every batch, may have none
    batch = next((b for b in datamodule.val_dataloader() if configured_inference(task, b)[1]), None)
    # a sharded model's forwards are collectives (trainer=fsdp): every rank times in step, those without a batch too
    lockstep = getattr(trainer.strategy, "evaluation_lockstep", nullcontext)
    if batch is None:
        log.warning("this process has no validation image left to time (all skipped as bad): "
                    "perf/infer_ms_per_image is null here")
        figures["perf/infer_ms_per_image"] = None
        with lockstep():
            return figures
    with lockstep():
        figures["perf/infer_ms_per_image"] = inference_ms_per_image(
            task, trainer.precision_plugin.convert_input(batch), trainer.strategy.root_device,
            trainer.precision_plugin.forward_context)
    return figures
