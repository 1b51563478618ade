"""Bytes autograd saves for backward, counted on any tensor: real, meta or fake (`FakeTensorMode`).

`SavedTensorCounter` (the training-cost callback's) tells storages apart by their data pointer, which every meta
and fake tensor shares (0); here a storage is known by its identity (`untyped_storage()._cdata`, stable for as long
as the storage lives), so a dry run on tensors without memory counts what a real run would hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import torch
from torch import Tensor


def storage_key(tensor: Tensor) -> int:
    """An identity of the storage under `tensor` (views share it), valid while that storage lives."""
    return tensor.untyped_storage()._cdata


class SavedBytes:
    """Context manager: sums the bytes of the storages autograd saves for backward inside it, each once.

    Args:
        exclude: tensors whose storages are not counted (the parameters: they are in memory anyway).

    Attributes:
        storages: storage identity -> its bytes, for each storage counted.
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._exclude = {storage_key(t) for t in exclude}
        self._kept: list[Tensor] = []  # keeps each counted storage alive, so its identity is not reused meanwhile
        self.storages: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    @property
    def total_bytes(self) -> int:
        """The bytes counted so far."""
        return sum(self.storages.values())

    def _pack(self, tensor: Tensor) -> Tensor:
        key = storage_key(tensor)
        if key not in self._exclude and key not in self.storages:
            self.storages[key] = tensor.untyped_storage().nbytes()
            self._kept.append(tensor)
        return tensor

    def __enter__(self) -> SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._hooks.__exit__(kind, error, trace)
        self._kept.clear()
