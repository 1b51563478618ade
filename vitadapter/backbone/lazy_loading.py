"""timm's own pretrained loading, stopped before it copies: the state dict it would load, memory-mapped.

`timm.create_model(name, pretrained=True)` resolves the weights (hub cache, URL or `pretrained_cfg_overlay` file),
reads them, adapts them to the model with the family's checkpoint filter (key renames such as DINOv3's
`storage_tokens` -> `reg_token`, q/v bias split, position-embedding and patch-kernel resampling, classifier
removal) and calls `model.load_state_dict`. On a meta-device model that last call would store nothing, so
`capture_pretrained_load` keeps the adapted state dict instead, and the caller copies tensor by tensor into the
model it materialises (`vitadapter.backbone.build`).

Nothing is read twice or held twice: safetensors files are opened by timm through safetensors' `safe_open`, whose
tensors are views of a memory map of the file, and `.pth`/`.bin` files are read with `torch.load(mmap=True,
weights_only=True)`, so a tensor's bytes are read from disk when it is copied. Once copied, its pages are handed
back (`MappedFile.release`, Linux): they would otherwise count in the process's resident size until the whole file
is unmapped, a second copy of the weights in the page cache. Legacy (pre-zip) `torch.save` files cannot be mapped
and are read whole.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from timm.models import _builder, _helpers
from torch import Tensor, nn
from torch.nn.modules.module import _IncompatibleKeys

log = logging.getLogger(__name__)


@dataclass
class CapturedLoad:
    """What timm's pretrained loading handed to `model.load_state_dict`.

    Attributes:
        state_dict: the adapted state dict (memory-mapped tensors where the file allows), or None if timm loaded the
            weights another way (a model's own `load_pretrained`, e.g. JAX `.npz` files).
        strict: whether timm asked for a strict load (False when it dropped a classifier).
    """

    state_dict: dict[str, Tensor] | None = None
    strict: bool = True


_ORIGINAL_TORCH_LOAD = _helpers._torch_load


def _mapped_torch_load(checkpoint_path: str, map_location: Any = "cpu", weights_only: bool = True,
                       mmap: bool = False) -> Any:
    """timm's `torch.load` with `mmap=True`; a legacy-format file, which cannot be mapped, is read whole."""
    try:
        return _ORIGINAL_TORCH_LOAD(checkpoint_path, map_location=map_location, weights_only=weights_only, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        log.warning("%s is a legacy torch.save file and cannot be memory-mapped: reading it whole (re-save it with a "
                    "current torch, or as .safetensors, to load it without a second copy)", checkpoint_path)
        return _ORIGINAL_TORCH_LOAD(checkpoint_path, map_location=map_location, weights_only=weights_only)



@contextmanager
def capture_pretrained_load() -> Iterator[CapturedLoad]:
    """Within the context, timm's pretrained loading keeps the state dict it would load instead of loading it.

    Yields:
        The capture, filled when `timm.create_model(..., pretrained=True)` reaches `model.load_state_dict`.
    """
    captured = CapturedLoad()
    original_load_pretrained = _builder.load_pretrained

    def load_pretrained(model: nn.Module, *args: Any, **kwargs: Any) -> None:
        def keep(state_dict: dict[str, Tensor], strict: bool = True, assign: bool = False) -> _IncompatibleKeys:
            captured.state_dict, captured.strict = dict(state_dict), strict
            return _IncompatibleKeys([], [])

        model.load_state_dict = keep  # an instance attribute shadows nn.Module's method for this call only
        try:
            with torch.device("cpu"):  # tensors a checkpoint filter creates are data, not the meta model's
                original_load_pretrained(model, *args, **kwargs)
        finally:
            del model.load_state_dict

    with mock.patch.object(_builder, "load_pretrained", load_pretrained), \
            mock.patch.object(_helpers, "_torch_load", _mapped_torch_load):
        yield captured


def check_loadable(state_dict: dict[str, Tensor], model_state: dict[str, Tensor], strict: bool) -> list[str]:
    """Checks a state dict against a model's as `nn.Module.load_state_dict` would.

    Args:
        state_dict: the weights to load.
        model_state: the model's state dict (meta tensors are fine: only names and shapes are read).
        strict: refuse missing and unexpected keys.

    Returns:
        The model's keys the state dict lacks (non-strict loads keep their initial values).
    """
    missing = sorted(set(model_state) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(model_state))
    errors = []
    if strict and unexpected:
        errors.append(f"Unexpected key(s) in state_dict: {', '.join(unexpected)}.")
    if strict and missing:
        errors.append(f"Missing key(s) in state_dict: {', '.join(missing)}.")
    for name in sorted(set(state_dict) & set(model_state)):
        if tuple(state_dict[name].shape) != tuple(model_state[name].shape):
            errors.append(f"size mismatch for {name}: copying a param with shape {tuple(state_dict[name].shape)} from "
                          f"checkpoint, the shape in current model is {tuple(model_state[name].shape)}.")
    if errors:
        raise RuntimeError("Error(s) in loading the pretrained weights:\n\t" + "\n\t".join(errors))
    return missing


def is_placeholder(tensor: Tensor) -> bool:
    """Whether a state-dict value carries no data (a meta tensor a filter took from the model being built)."""
    return isinstance(tensor, torch.Tensor) and tensor.is_meta


class MappedFile:
    """The address ranges where a weights file is memory-mapped in this process, to give pages back once copied.

    Args:
        path: the weights file (symlinks resolved: the Hugging Face cache links to blobs); None: nothing to release.
    """

    _MADV_DONTNEED = 4

    def __init__(self, path: str | Path | None) -> None:
        self.ranges: list[tuple[int, int]] = []
        if path is None or not sys.platform.startswith("linux"):
            return
        target = os.path.realpath(path)
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].strip() == target and fields[1].endswith("p"):
                    low, high = (int(bound, 16) for bound in fields[0].split("-"))
                    self.ranges.append((low, high))

    def release(self, tensor: Tensor) -> None:
        """Drops the whole pages of a copied tensor's bytes from this process (they are re-read if touched again).

        Only for a tensor that lies in the file's private mapping, after its values were copied: its mapped pages
        hold nothing that is not in the file.
        """
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        if not any(low <= start and end <= high for low, high in self.ranges):
            return
        first, last = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE, end // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), self._MADV_DONTNEED)
