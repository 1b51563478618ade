"""The small datamodule and the module-scoped synthetic root that the COCO datamodule tests share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

DataModule = TypeVar("DataModule")


def small_datamodule(cls: type[DataModule], root: Path, defaults: dict[str, Any], **kwargs: object) -> DataModule:
    """``cls`` on ``root`` with batches of two and no worker processes, then ``defaults``, then ``kwargs``."""
    args = dict(root=str(root), batch_size=2, val_batch_size=2, num_workers=0, **defaults)
    return cls(**{**args, **kwargs})


def synthetic_root_fixture(make: Callable[[Path], Any], name: str) -> Any:
    """A module-scoped fixture: a temporary folder ``name`` holding the synthetic set ``make(root)`` prepares."""

    @pytest.fixture(scope="module")
    def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
        root = tmp_path_factory.mktemp(name)
        make(root).prepare_data()
        return root

    return synth_root
