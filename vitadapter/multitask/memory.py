"""How much memory tensors hold, counting a storage that several tensors share once."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (shared or tied tensors count once)."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[(storage.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())
