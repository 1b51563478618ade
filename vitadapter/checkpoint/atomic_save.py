"""Writing checkpoint files so that a kill during a save never leaves a torn file."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

import torch

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside `path`: `.<name>.<pid>.<random>.tmp` (hidden, and never `*.ckpt`)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; some filesystems refuse fsync on a directory
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)` through a temporary file in the same directory, fsynced, then `os.replace`d.

    Lightning's own atomic save moves a temporary file that may sit on another filesystem, where the
    move is a copy. A rename within one directory is atomic (POSIX `rename(2)`): readers see either
    the previous file or the complete new one. A failed save removes its temporary file; a killed one
    leaves it behind under the name of `temp_path_for`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(path)
    try:
        with open(temp, "xb") as f:  # created with the umask's permissions, unlike mkstemp's 0600
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_directory(path.parent)
