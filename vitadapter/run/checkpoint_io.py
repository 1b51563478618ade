"""Lightning's checkpoint IO for train.py and resume: files written atomically, read by `vitadapter.checkpoint`'s
safe reader (so that none can run code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vitadapter.checkpoint import atomic_torch_save, load_checkpoint_file, refusing_unsafe


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's `TorchCheckpointIO` with `atomic_torch_save` for local paths (remote URLs: Lightning's own),
    and every read through torch's safe unpickler (resume, and the validation of train.py)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Writes `checkpoint` to `path` atomically (see `atomic_torch_save`)."""
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: _PATH, map_location: Callable | None = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Reads with torch's safe unpickler whatever the caller asks: local files through
        `vitadapter.checkpoint.load_checkpoint_file` (older formats upgraded), remote URLs through Lightning's
        read with `weights_only=True`. A refused file raises `UnsafeCheckpointError` naming it (nothing of it ran)."""
        if not _is_local_file_protocol(path):
            with refusing_unsafe(path):
                return super().load_checkpoint(path, map_location, weights_only=True)
        return load_checkpoint_file(path, map_location)
