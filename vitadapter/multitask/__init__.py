"""Several tasks on one frozen ViT: serving them together (`MultiTaskModel`) and merging trained adapters
(`merge_checkpoints`). Names are imported on first use, so `scripts/merge_adapters.py` does not load Lightning."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MultiTaskModel": "vitadapter.multitask.model",
    "tensor_bytes": "vitadapter.multitask.memory",
    "MergeError": "vitadapter.multitask.merging",
    "merge_checkpoints": "vitadapter.multitask.merging",
    "save_merged": "vitadapter.multitask.merging",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vitadapter.multitask' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
