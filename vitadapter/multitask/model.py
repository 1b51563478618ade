"""Several trained tasks served from one copy of a frozen ViT's weights.

Every task keeps its own modules (its PEFT method, neck, head, inference settings and preprocessing)
but its backbone's frozen tensors are replaced by the ones the first task loaded, so a second task
costs only what it trained. Sharing tensors rather than one module tree is what lets any method join:
methods wrap the ViT's sublayers (adapters, LoRA, SSF) or train some of its own tensors (BitFit,
LayerNorm tuning), and each task's modules stay exactly the model it was trained as, so its outputs
are bit-identical to loading its checkpoint alone. A tensor that trains in some task is never shared
(a BitFit task keeps its own biases), so training one task cannot change what another computes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from vitadapter.backbone.fingerprint import check_trained_on
from vitadapter.checkpoint import TrainedCheckpoint
from vitadapter.inference.predictors import task_predictor
from vitadapter.multitask.memory import tensor_bytes
from vitadapter.run.trained import load_trained
from vitadapter.tasks.base import FrozenBackboneTask

log = logging.getLogger(__name__)


class MultiTaskModel(nn.Module):
    """Tasks by name on one frozen ViT: `model(image, task="ade20k_seg")`, `model.predict(rgb, task=...)`.

    Build it from checkpoints (`from_checkpoints`), or add tasks built in Python (`add_task`), e.g. a
    new task to train beside those already served.

    Attributes:
        tasks: the tasks by name (each a `SegmentationTask`, `DetectionTask` or `DepthTask`).
        datamodules: each task's datamodule (its preprocessing, class names and colours), when known.
        sources: each task's checkpoint path, when it came from one.
        fingerprint: the frozen weights' fingerprint every task shares (None before the first task).
    """

    def __init__(self) -> None:
        super().__init__()
        self.tasks = nn.ModuleDict()
        self.datamodules: dict[str, L.LightningDataModule] = {}
        self.sources: dict[str, str] = {}
        self.backbone_name: str | None = None
        self.fingerprint: str | None = None
        self._frozen: dict[str, Tensor] = {}  # timm name -> the one copy of each shared frozen tensor

    @classmethod
    def from_checkpoints(cls, ckpt_paths: Sequence[str | Path], names: Sequence[str] | None = None) -> MultiTaskModel:
        """Loads checkpoints written by train.py onto one frozen ViT.

        Args:
            ckpt_paths: the checkpoints; all must have been trained on the same frozen weights.
            names: a name per checkpoint; None: each checkpoint's `model.task_name`.

        Returns:
            The model in eval mode.
        """
        if names is not None and len(names) != len(ckpt_paths):
            raise ValueError(f"{len(names)} task names for {len(ckpt_paths)} checkpoints; give one name per checkpoint")
        model = cls()
        for index, path in enumerate(ckpt_paths):
            model.load_checkpoint(path, None if names is None else names[index])
        return model.eval()

    @property
    def task_names(self) -> list[str]:
        """The tasks' names, in the order they were added."""
        return list(self.tasks)

    def load_checkpoint(self, ckpt_path: str | Path, name: str | None = None) -> FrozenBackboneTask:
        """Loads one more checkpoint as a task; its frozen weights must be the ones already loaded.

        Args:
            ckpt_path: a checkpoint written by train.py.
            name: the task's name; None: the `model.task_name` recorded in the checkpoint.

        Returns:
            The loaded task.
        """
        checkpoint = TrainedCheckpoint.read(ckpt_path)
        if self.fingerprint is not None:  # before building a model that would be refused
            check_trained_on(checkpoint.subject, checkpoint.backbone_name, checkpoint.backbone_fingerprint,
                             self._shared_description(), self.backbone_name, self.fingerprint)
        datamodule, task = load_trained(checkpoint)
        name = self.add_task(task, name, source=str(ckpt_path))
        self.datamodules[name] = datamodule
        return task

    def add_task(self, task: FrozenBackboneTask, name: str | None = None, source: str | None = None) -> str:
        """Adds a task whose backbone has the shared frozen weights; its frozen tensors become the shared ones.

        Args:
            task: a built task (trained or about to train); its backbone must have the shared fingerprint.
            name: its name; None: `task.task_name`.
            source: where it came from (a checkpoint path), for messages.

        Returns:
            The name it was added under.
        """
        name = name or task.task_name
        if not name or "." in name:
            raise ValueError(f"task name {name!r} is not usable: give a non-empty name without '.' (model.task_name)")
        if name in self.tasks:
            where = f" ({self.sources[name]})" if name in self.sources else ""
            raise ValueError(f"a task named {name!r}{where} is already loaded; name the tasks apart (predict.py "
                             "task_names=[...], MultiTaskModel.from_checkpoints(names=...), or model.task_name=... "
                             "at training time)")
        backbone = task.backbone
        if self.fingerprint is None:
            self.backbone_name, self.fingerprint = backbone.name, backbone.fingerprint
        check_trained_on(source or f"task {name!r}", backbone.name, backbone.fingerprint, self._shared_description(),
                         self.backbone_name, self.fingerprint)
        if task.encoder.merged:
            raise ValueError(f"task {name!r} has its method merged into its ViT weights; add it unmerged "
                             "(model.adapter.merge=false) so that the frozen weights can be shared")
        backbone.adopt_frozen_tensors(self._frozen)
        self.tasks[name] = task
        if source is not None:
            self.sources[name] = source
        return name

    def _shared_description(self) -> str:
        return f"the backbone of the tasks loaded so far ({', '.join(self.tasks) or 'none'})"

    def task(self, name: str) -> FrozenBackboneTask:
        """The task called `name`."""
        if name not in self.tasks:
            raise KeyError(f"no task named {name!r}; the tasks are {self.task_names}")
        return self.tasks[name]  # type: ignore[return-value]

    def forward(self, image: Any, task: str) -> Any:
        """Runs task `task` on preprocessed input: a normalised B×3×H×W tensor (segmentation: logits at
        stride 4; depth: B×1×h×w metres at the head's resolution) or a list of them (detection, in eval mode:
        detections in the input's pixels)."""
        return self.task(task)(image)

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray, task: str) -> Any:
        """A task's prediction on an H×W×3 uint8 RGB image at its own size, through that task's preprocessing.

        Returns:
            Segmentation: the H×W class map; detection: `boxes`, `scores`, `labels` (and `masks`) in its pixels;
            depth: the H×W depth in metres (float32), as `DepthTask.predict_depth` computes it.
        """
        model = self.task(task)
        if task not in self.datamodules:
            raise ValueError(f"task {task!r} was added without a datamodule, so its preprocessing is unknown; "
                             "load it with load_checkpoint, or call the model on a preprocessed tensor")
        device = next(model.parameters()).device
        return task_predictor(model, self.datamodules[task], device)(rgb)

    def memory_bytes(self) -> dict[str, Any]:
        """Bytes of distinct tensors: `shared` (the one copy of the frozen ViT), `tasks` (each task's own tensors
        by name: what it trained, its neck's and head's buffers) and `total` (all of them, each counted once)."""
        shared = {(t.device, t.untyped_storage().data_ptr()) for t in self._frozen.values()}
        own = {
            name: tensor_bytes(t for t in (*task.parameters(), *task.buffers())
                               if (t.device, t.untyped_storage().data_ptr()) not in shared)
            for name, task in self.tasks.items()
        }
        return {"shared": tensor_bytes(self._frozen.values()), "tasks": own,
                "total": tensor_bytes([*self.parameters(), *self.buffers()])}
