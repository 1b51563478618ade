"""A training step without memory: the task of a composed config built on the meta device and run on fake tensors.

The frozen ViT is built as `ViTBackbone(..., device="meta")` builds it (the structure, no values), the method, neck
and heads under `torch.device("meta")`; every tensor is then replaced by a `FakeTensor` of the same shape, dtype
and `requires_grad` on the device the run would use. Fake tensors carry a device (so autocast and the frozen
trunk's `frozen_compute` act as in a real run) but no data: a 7B model's steps run in seconds, nothing allocated.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode

AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
WHOLE_MODEL_DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16, "64-true": torch.float64}


def run_device(trainer: DictConfig) -> torch.device:
    """The device a trainer config trains on ("cpu" or "cuda"; `auto` is CUDA when this machine has it)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if accelerator in ("gpu", "cuda"):
        return torch.device("cuda")
    if accelerator == "cpu":
        return torch.device("cpu")
    raise ValueError(f"trainer.accelerator={accelerator!r}: the memory estimate knows cpu and gpu")


def simulated_device(trainer: DictConfig) -> torch.device:
    """The device of the dry run's fake tensors: the run's, except a CUDA run on a machine without CUDA (where
    `torch.autocast("cuda")` turns itself off), simulated on the CPU, whose autocast gives the matrix products the
    same dtypes."""
    device = run_device(trainer)
    return torch.device("cpu") if device.type == "cuda" and not torch.cuda.is_available() else device


def precision_name(trainer: DictConfig) -> str:
    """`trainer.precision` in Lightning's spelling ("32-true", "bf16-mixed", ...)."""
    value = str(trainer.get("precision", "32-true"))
    return {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}.get(value, value)


def build_meta_task(cfg: DictConfig) -> L.LightningModule:
    """The task of `cfg.model` with every tensor on the meta device (the frozen ViT as `device="meta"` builds it).

    Args:
        cfg: a composed train.yaml config (its datamodule is built too, unread, for the class names).
    """
    datamodule = instantiate(cfg.data)
    model = OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))
    with open_dict(model):
        model.backbone.device = "meta"
        if model.get("task_name", "absent") is None:
            model.task_name = "dry_run"
    with torch.device("meta"):
        return instantiate(model, class_names=getattr(datamodule, "class_names", None))


def fake_tensors(module: nn.Module, mode: FakeTensorMode, device: torch.device,
                 float_dtype: torch.dtype | None = None) -> None:
    """Replaces every parameter and buffer of `module` by a fake tensor on `device` (shared tensors stay shared).

    Args:
        module: a module (on the meta device or anywhere).
        mode: the fake mode the tensors belong to.
        device: their device.
        float_dtype: the dtype every floating tensor becomes (a `*-true` precision's whole-model cast), or None.
    """
    made: dict[int, Tensor] = {}
    originals = []  # alive until the end, so no id is reused while `made` is keyed by ids
    for submodule in module.modules():
        for slots in (submodule._parameters, submodule._buffers):
            for key, tensor in slots.items():
                if tensor is None:
                    continue
                if id(tensor) not in made:
                    originals.append(tensor)
                    dtype = float_dtype if float_dtype is not None and tensor.is_floating_point() else tensor.dtype
                    with mode:
                        fake = torch.empty(tensor.shape, dtype=dtype, device=device)
                    made[id(tensor)] = (nn.Parameter(fake, requires_grad=tensor.requires_grad)
                                        if isinstance(tensor, nn.Parameter) else fake)
                slots[key] = made[id(tensor)]


def fake_task(cfg: DictConfig, mode: FakeTensorMode) -> L.LightningModule:
    """The task of `cfg` on fake tensors, on the device and in the dtype `cfg.trainer` trains in, in training mode."""
    task = build_meta_task(cfg)
    fake_tensors(task, mode, simulated_device(cfg.trainer), WHOLE_MODEL_DTYPES.get(precision_name(cfg.trainer)))
    return task.train()


def crop_hw(crop_size: Any) -> tuple[int, int]:
    """`data.crop_size` (an int or [height, width]) as (height, width)."""
    if isinstance(crop_size, int | float):
        return int(crop_size), int(crop_size)
    height, width = (int(v) for v in crop_size)
    return height, width


def training_batch(task: L.LightningModule, data: DictConfig, device: torch.device) -> dict[str, Tensor]:
    """A batch of the shapes the task's training step reads, at `data.batch_size` and `data.crop_size` (call inside
    the fake mode: no memory is filled)."""
    if not hasattr(task, "predict_depth") and not hasattr(task, "predict_probabilities"):
        raise NotImplementedError(f"{type(task).__name__}: the memory estimate covers dense tasks (segmentation, "
                                  "depth); a detector's step depends on the boxes it samples")
    batch_size, crop = int(data.batch_size), crop_hw(data.crop_size)
    image = torch.empty(batch_size, 3, *crop, device=device)
    if hasattr(task, "predict_depth"):
        return {"image": image, "depth": torch.empty(batch_size, *crop, device=device)}
    return {"image": image, "mask": torch.zeros(batch_size, *crop, dtype=torch.long, device=device)}


@contextmanager
def dry_run_step(task: L.LightningModule) -> Iterator[None]:
    """Lets `task.training_step` run on fake tensors: no finite-loss check (it reads the loss's value) and no
    `self.log` warnings (there is no trainer)."""
    task.checked_loss = lambda loss, batch, batch_idx: loss  # an instance attribute shadows the method
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*self\.log\(\).*")
            yield
    finally:
        del task.checked_loss


def forward_context(cfg: DictConfig, device: torch.device) -> Any:
    """The trainer's forward context: autocast for a `*-mixed` precision, else nothing."""
    dtype = AUTOCAST_DTYPES.get(precision_name(cfg.trainer))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
