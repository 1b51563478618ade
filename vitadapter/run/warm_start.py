"""Warm start: a new run's PEFT method (and optionally neck and head) starts from another run's trained tensors.

As mmseg's `load_from`: the weights are copied before training and nothing else (optimiser, step, schedule)
is resumed. Tensors are matched by their name inside the encoder, so a detection run's adapters can start a
segmentation run (`encoder.` vs `detector.backbone.encoder.`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import lightning as L

from vitadapter.backbone.fingerprint import check_trained_on
from vitadapter.checkpoint import load_checkpoint_file

log = logging.getLogger(__name__)

PARTS = ("adapter", "neck", "head")
_IN_ENCODER = re.compile(r"^(?:.*?\.)?encoder\.(?P<name>.+)$")


def part_of(key: str) -> tuple[str, str]:
    """(part, name) of a state-dict key: the method's tensors (inside the encoder's ViT or its hooks), the
    neck's, or the head's (everything outside the encoder), named from the encoder when inside it."""
    match = _IN_ENCODER.match(key)
    if match is None:
        return "head", key
    name = match["name"]
    if name.startswith(("backbone.", "hooks.")):
        return "adapter", name
    return ("neck" if name.startswith("neck.") else "head"), name


def warm_start(task: L.LightningModule, ckpt_path: str | Path, parts: Sequence[str] = ("adapter",)) -> int:
    """Copies the trained tensors of `parts` from a train.py checkpoint into `task`.

    Args:
        task: the freshly built task (same frozen ViT; for `adapter`, the same method and hyper-parameters).
        ckpt_path: the checkpoint to start from.
        parts: any of "adapter", "neck", "head".

    Returns:
        The number of tensors copied.
    """
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"init_from.parts={list(parts)}: choose from {list(PARTS)}")
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from.ckpt_path={str(ckpt_path)!r} does not exist; give a train.py checkpoint")
    checkpoint = load_checkpoint_file(path)
    meta = checkpoint.get("vitadapter") or {}
    check_trained_on(f"init_from.ckpt_path={path}", meta.get("backbone_name"), meta.get("backbone_fingerprint"),
                     "this run's backbone", task.backbone.name, task.backbone.fingerprint)
    source = {part_of(k): v for k, v in checkpoint["state_dict"].items() if part_of(k)[0] in parts}
    frozen = set(task.frozen_state_keys())
    target = {part_of(k): (k, v) for k, v in task.state_dict().items() if k not in frozen and part_of(k)[0] in parts}
    missing = sorted(name for _, name in set(target) - set(source))
    extra = sorted(name for _, name in set(source) - set(target))
    reshaped = sorted(f"{key[1]} {tuple(source[key].shape)} -> {tuple(target[key][1].shape)}"
                      for key in set(source) & set(target) if source[key].shape != target[key][1].shape)
    if missing or extra or reshaped:
        method = (meta.get("config") or {}).get("model", {}).get("adapter", {}).get("name")
        problems = [f"{label}: {items[:3]}{' ...' if len(items) > 3 else ''}"
                    for label, items in (("missing there", missing), ("not in this model", extra),
                                         ("other shapes", reshaped)) if items]
        raise ValueError(f"init_from.ckpt_path={path} (method {method!r}) does not fit this model's {list(parts)}: "
                         f"{'; '.join(problems)}. Warm starts need the same method and hyper-parameters "
                         "(and, for neck/head, the same neck, head and classes)")
    task.load_state_dict({target[key][0]: tensor for key, tensor in source.items()}, strict=False)
    log.info("init_from: %d tensors of %s from %s", len(source), "/".join(parts), path)
    return len(source)
