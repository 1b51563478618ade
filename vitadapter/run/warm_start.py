"""Warm start: a new run's PEFT method (and optionally neck and head) starts from another run's trained tensors.

As mmseg's `load_from`: the weights are copied before training and nothing else (optimiser, step, schedule)
is resumed. Tensors are matched by their name inside the encoder, so a detection run's adapters can start a
segmentation run (`encoder.` vs `detector.backbone.encoder.`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L

from vitadapter.checkpoint import PARTS, TrainedCheckpoint, classify_key
from vitadapter.checkpoint.keys import check_parts

log = logging.getLogger(__name__)


def warm_start(task: L.LightningModule, ckpt_path: str | Path, parts: Sequence[str] = ("adapter",)) -> int:
    """Copies the trained tensors of `parts` from a train.py checkpoint into `task`.

    Args:
        task: the freshly built task (same frozen ViT; for `adapter`, the same method and hyper-parameters).
        ckpt_path: the checkpoint to start from.
        parts: any of "adapter", "neck", "head" (see `vitadapter.checkpoint.keys`).

    Returns:
        The number of tensors copied.
    """
    check_parts(list(parts), "init_from.parts")
    if not parts:
        raise ValueError(f"init_from.parts=[]: choose from {list(PARTS)}")
    checkpoint = TrainedCheckpoint.read(ckpt_path, f"init_from.ckpt_path={str(ckpt_path)!r}")
    checkpoint.check_trained_on(task.backbone, "this run's backbone")
    source = {(key.part, key.name): tensor for key, tensor in checkpoint.tensors(*parts).items()}
    frozen = set(task.frozen_state_keys())
    placed = (classify_key(k) for k in task.state_dict() if k not in frozen)
    target = {(key.part, key.name): key.key for key in placed if key.part in parts}
    shapes = task.state_dict()
    missing = sorted(name for _, name in set(target) - set(source))
    extra = sorted(name for _, name in set(source) - set(target))
    reshaped = sorted(f"{key[1]} {tuple(source[key].shape)} -> {tuple(shapes[target[key]].shape)}"
                      for key in set(source) & set(target) if source[key].shape != shapes[target[key]].shape)
    if missing or extra or reshaped:
        problems = [f"{label}: {items[:3]}{' ...' if len(items) > 3 else ''}"
                    for label, items in (("missing there", missing), ("not in this model", extra),
                                         ("other shapes", reshaped)) if items]
        method = checkpoint.method_name if checkpoint.has_run_config else None
        raise ValueError(f"{checkpoint.subject} (method {method!r}) does not fit this model's "
                         f"{list(parts)}: {'; '.join(problems)}. Warm starts need the same method and "
                         "hyper-parameters (and, for neck/head, the same neck, head and classes)")
    task.load_state_dict({target[key]: tensor for key, tensor in source.items()}, strict=False)
    log.info("init_from: %d tensors of %s from %s", len(source), "/".join(parts), checkpoint.path)
    return len(source)
