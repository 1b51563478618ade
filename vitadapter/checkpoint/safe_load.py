"""Reading checkpoints without running code: every checkpoint read goes through `torch.load(weights_only=True)`.

A `.ckpt` is a pickle, and unpickling a crafted file runs whatever code it names (PyTorch's serialization
notes). With `weights_only=True` torch's restricted unpickler rebuilds only tensors and plain Python values
(dicts, lists, tuples, strings, numbers, ...) and refuses every other global. No global is allow-listed on
top: train.py's checkpoints hold only such values (the run config as plain containers, the random generators'
states as tensors and ints, file paths as strings), and tests keep them so.
"""

from __future__ import annotations

import contextlib
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from vitadapter.checkpoint.format import META_KEY, upgrade_run_config

_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+)")
_UNPICKLER_ERROR = "WeightsUnpickler error:"


class UnsafeCheckpointError(ValueError):
    """A checkpoint that `torch.load(weights_only=True)` refused: unpickling it could run code.

    Attributes:
        path: the refused file.
        refused: the global the restricted unpickler refused (e.g. `io.open`); None when it refused
            something else, which `detail` then names in torch's words.
        detail: torch's account of the refusal.
    """

    def __init__(self, path: str | Path, torch_message: str) -> None:
        self.path = str(path)
        found = _REFUSED_GLOBAL.search(torch_message)
        self.refused = found[1] if found else None
        detail = torch_message.split(_UNPICKLER_ERROR, 1)[-1].strip().split("\n\n")[0].strip()
        self.detail = detail or torch_message.strip()
        what = f"the global {self.refused}" if self.refused else f"its content ({self.detail})"
        super().__init__(
            f"{path} was not loaded because unpickling it could run code: torch.load(weights_only=True) refused "
            f"{what}. vitadapter's train.py writes only tensors and plain Python values, so this file was "
            "written by something else or changed since. Do not load it unless you trust where it came from; "
            "to use a trusted one, load it yourself with torch.load(path, weights_only=False), replace that "
            "object by plain values (dict, list, str, numbers, tensors) and torch.save it again"
        )


@contextlib.contextmanager
def refusing_unsafe(path: str | Path) -> Iterator[None]:
    """Turns torch's weights_only refusal inside the block into an `UnsafeCheckpointError` naming `path`.

    Wrap a `torch.load(..., weights_only=True)` of `path` (or a loader that makes one, such as Lightning's
    `TorchCheckpointIO.load_checkpoint`).
    """
    try:
        yield
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(path, str(error)) from error


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Reads a checkpoint with torch's safe unpickler (tensors and plain Python values only).

    Args:
        path: the checkpoint file.
        map_location: where its tensors go (`torch.load`'s argument); the CPU by default.

    Returns:
        The checkpoint's dict; a vitadapter checkpoint of an older format is brought to the current one
        (`upgrade_run_config`).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs a global the safe unpickler refuses; nothing of it ran.
        ValueError: the file holds something other than a dict.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with refusing_unsafe(path):
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint (a dict); "
                         "give a checkpoint written by train.py")
    if isinstance(checkpoint.get(META_KEY), dict):
        upgrade_run_config(checkpoint[META_KEY], path)
    return checkpoint
