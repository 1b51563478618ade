"""What one image costs at inference: the configured validation inference of a task, timed.

`perf/infer_ms_per_image` is timed on one validation batch: for segmentation the task's
`predict_probabilities` (the configured whole or sliding-window inference and test-time augmentation,
probabilities at the label's size), for depth its `predict_depth` (the same, depths at the ground truth's
size), for detection, instance and panoptic segmentation the task's `predict` (the eval forward,
predictions mapped back to the original images). The median of 3 timed passes after 1 untimed, in eval
mode, under `torch.inference_mode` and the trainer's precision, on the training device (CUDA
synchronised around each pass). It times the model as trained and validated, its method NOT merged
into the frozen weights (merging rewrites the ViT in place and cannot be undone; the task is not
copied, so the frozen ViT is never held twice): for a mergeable method (LoRA, SSF, ...) the deployed,
merged model can be faster (`scripts/benchmark_merge.py` measures both).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device


def configured_inference(task: L.LightningModule, batch: Mapping[str, Any]) -> tuple[Callable[[], list[Any]], int]:
    """The inference validation runs on `batch`, as a callable returning its outputs, and the batch's image count.

    Segmentation: `predict_probabilities` per image at its label's size (validation batches are lists of
    differently sized images, each run alone); depth: `predict_depth` likewise. Detection, instance segmentation and
    panoptic segmentation: `predict` on the batch's images.
    """
    if "images" in batch:
        images = batch["images"]
        return lambda: task.predict(images, batch["scales"], batch["orig_sizes"]), len(images)
    if "panoptic" in batch or not batch:  # panoptic; collate_panoptic gives {} when every image was skipped as bad
        images = batch.get("image", [])
        return lambda: task.predict(images, batch["scale"], batch["orig_size"]), len(images)
    if "depth" in batch:
        pairs = list(zip(batch["image"], batch["depth"]))
        return (lambda: [task.predict_depth(image.unsqueeze(0), tuple(depth.shape[-2:])) for image, depth in pairs],
                len(pairs))
    pairs = list(zip(batch["image"], batch["mask"]))
    return (lambda: [task.predict_probabilities(image.unsqueeze(0), tuple(mask.shape[-2:])) for image, mask in pairs],
            len(pairs))


def median_ms_per_image(inference: Callable[[], Any], num_images: int, device: torch.device, repeats: int = 3,
                        clock: Callable[[], float] = time.perf_counter) -> float:
    """Median milliseconds per image of `repeats` timed calls of `inference` (after one untimed).

    Args:
        inference: runs the model on `num_images` images.
        num_images: how many images one call processes.
        device: where the model runs (CUDA is synchronised around each call).
        repeats: timed calls.
        clock: seconds as a float.
    """
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times = []
    for index in range(repeats + 1):
        sync()
        start = clock()
        inference()
        sync()
        elapsed = clock() - start
        if index:
            times.append(elapsed * 1000.0 / num_images)
    return statistics.median(times)


@contextmanager
def evaluating(task: L.LightningModule, device: torch.device) -> Iterator[L.LightningModule]:
    """`task` itself (no copy) on `device` in eval mode; afterwards back on its device, each module in its mode.

    Lightning moves the task to the CPU when fitting ends; it goes back there so that a sweep's next
    run (in the same process) finds the accelerator's memory free.
    """
    modes = {module: module.training for module in task.modules()}
    home = next(task.parameters()).device
    moves = home != device  # not moved in place (a sharded model's parameters cannot be, between its forwards)
    if moves:
        task.to(device)
    task.eval()
    try:
        yield task
    finally:
        if moves:
            task.to(home)
        for module, training in modes.items():
            module.training = training


def inference_ms_per_image(task: L.LightningModule, batch: Mapping[str, Any], device: torch.device,
                           forward_context: Callable[[], Any], repeats: int = 3,
                           clock: Callable[[], float] = time.perf_counter) -> float:
    """Median milliseconds per image of the configured inference of `task` on `batch` (see the module docstring).

    Args:
        task: the trained task (moved to `device` and put in eval mode for the measurement, then restored).
        batch: a validation batch holding at least one image (moved to `device` here).
        device: where to time it.
        forward_context: the trainer's precision context (autocast for mixed precision).
        repeats: timed passes.
        clock: seconds as a float.
    """
    with evaluating(task, device), torch.inference_mode(), forward_context():
        inference, num_images = configured_inference(task, move_data_to_device(batch, device))
        return median_ms_per_image(inference, num_images, device, repeats, clock)
