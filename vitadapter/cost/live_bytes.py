"""The peak bytes of the tensors alive at once while code runs, on any tensors: real, meta or fake.

Every tensor an op makes inside `LiveBytes` is counted from its making until its storage is freed (views share a
storage and count once), so the peak is what an allocator without waste would need: saved activations and the
intermediates alive beside them, gradients, the optimiser state, each while it lives. Tensors made before (the
weights) are left out.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vitadapter.cost.saved_bytes import storage_key


class LiveBytes(TorchDispatchMode):
    """Dispatch mode: tracks the bytes of the storages made inside it that are alive, and their peak.

    Args:
        exclude: tensors whose storages are never counted (the weights), even when an in-place op returns them.

    Attributes:
        current: bytes alive now.
        peak: the most bytes alive at once so far.
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        super().__init__()
        self._exclude = {storage_key(t) for t in exclude}
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def reset_peak(self) -> None:
        """Starts a new peak from the bytes alive now."""
        self.peak = self.current

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, Tensor):
                self._track(tensor)
        return out

    def _track(self, tensor: Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage_key(tensor)
        if key in self._exclude or key in self._live:
            return
        self._live[key] = storage.nbytes()
        self.current += self._live[key]
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)
