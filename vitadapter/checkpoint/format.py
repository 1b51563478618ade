"""What vitadapter adds to a Lightning checkpoint: the `vitadapter` entry, its format version and upgrades.

The entry records what rebuilding and checking the model needs without the dataset or the frozen weights:
the run config, the frozen backbone's name and fingerprint, the PEFT method's own record (e.g. AdapterFusion's
sources) and the class names the task predicts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# the checkpoint's entry that vitadapter writes (beside Lightning's state_dict, loops, optimizer_states, ...)
META_KEY = "vitadapter"
# the layout of checkpoint["vitadapter"]; a checkpoint without the key is of format 1
FORMAT_VERSION = 2
# Convpass before format 2 had no `activation`, `act_before_conv`, `init`, `prefix_through_conv` and `dropout`
# fields and computed: GELU after the conv only, PyTorch's default init, prefix tokens beside the conv, no dropout
_FORMAT_1_CONVPASS = {"activation": "gelu", "act_before_conv": False, "init": "torch", "prefix_through_conv": False,
                      "dropout": 0.0}
# `_target_` prefixes of classes that moved: a stored config naming the old place builds from the new one
_MOVED_TARGETS = {"vitadapter.heads.detectors.": "vitadapter.detection."}


def vitadapter_entry(backbone_name: str, backbone_fingerprint: str, run_config: dict[str, Any] | None,
                     method_record: dict[str, Any], class_names: Sequence[str] | None) -> dict[str, Any]:
    """The `vitadapter` entry a trained model's checkpoint carries (see `TrainedCheckpoint` for reading it).

    Args:
        backbone_name: the frozen ViT's timm name.
        backbone_fingerprint: the hash of its frozen tensors (`ViTBackbone.fingerprint`).
        run_config: the resolved run config ({"model", "data", "monitor", "trainer", "trained_on"}) that rebuilds
            the model; None when the model was built in Python.
        method_record: the PEFT method's `checkpoint_record()` ({} without a method).
        class_names: the task's class names in label order; None when the host has none.
    """
    return {
        "format_version": FORMAT_VERSION,
        "backbone_name": backbone_name,
        "backbone_fingerprint": backbone_fingerprint,
        "config": run_config,
        "method_record": method_record,
        "class_names": None if class_names is None else [str(name) for name in class_names],
    }


def upgrade_run_config(meta: dict[str, Any], path: str | Path) -> None:
    """Brings `checkpoint["vitadapter"]` of an older format to the current one, in place, so that the model it
    rebuilds computes what it computed when it was trained.

    Format 1 -> 2: a Convpass config gets the fields of the form it was trained with (see `_FORMAT_1_CONVPASS`);
    `full`'s `model.adapter.layer_decay` moves to `model.optimizer.layer_decay`. In any format, `_target_`s of
    classes that moved (`_MOVED_TARGETS`) name their new place.

    Args:
        meta: the checkpoint's "vitadapter" entry.
        path: the checkpoint (for the log).
    """
    version = meta.get("format_version", 1)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {version}, newer than this vitadapter's ({FORMAT_VERSION}); "
                         "upgrade vitadapter to read it")
    model = (meta.get("config") or {}).get("model") or {}
    adapter = model.get("adapter") or {}
    if version < 2 and adapter.get("name") == "convpass":
        missing = {k: v for k, v in _FORMAT_1_CONVPASS.items() if k not in adapter}
        adapter.update(missing)
        if missing:
            log.info("%s: Convpass trained before the authors' form was the default; rebuilt with %s", path, missing)
    if version < 2 and adapter.get("name") == "full" and adapter.get("layer_decay") is not None:
        model.setdefault("optimizer", {})["layer_decay"] = adapter.pop("layer_decay")
    _rename_moved_targets(model)
    meta["format_version"] = FORMAT_VERSION


def _rename_moved_targets(node: Any) -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        for old, new in _MOVED_TARGETS.items():
            if isinstance(target, str) and target.startswith(old):
                node["_target_"] = new + target[len(old):]
        for value in node.values():
            _rename_moved_targets(value)
    elif isinstance(node, list):
        for value in node:
            _rename_moved_targets(value)
