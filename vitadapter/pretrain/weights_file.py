"""The pretrained backbone's weights file: a timm state dict in safetensors, with how it was made as metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor


def save_backbone_weights(state: Mapping[str, Tensor], path: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Writes `state` to `path` atomically (a half-written file never has the final name).

    Args:
        state: the timm model's state dict (contiguous tensors, no pretraining head).
        path: the .safetensors file to write; its folder is created.
        metadata: how the weights were made; values are stored as JSON strings (safetensors metadata is str -> str).

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"the pretrained weights file must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(dict(state), str(partial), metadata={str(k): json.dumps(v) for k, v in metadata.items()})
    os.replace(partial, path)
    return path


def read_backbone_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata `save_backbone_weights` stored in `path`."""
    with safe_open(str(path), framework="pt") as handle:
        return {key: json.loads(value) for key, value in (handle.metadata() or {}).items()}
