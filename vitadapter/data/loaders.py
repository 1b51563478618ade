"""What both datamodules share: plain config values and the train / evaluation DataLoaders."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from vitadapter.data.distributed import unrepeated_sampler


def plain(value: Any) -> Any:
    """Turns OmegaConf ListConfig/DictConfig (or any nested sequence/mapping) into tuples and dicts."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(plain(v) for v in value)
    return value


def floats(values: Sequence[float], name: str, length: int) -> tuple[float, ...]:
    """`length` floats from a config value, or a ValueError naming the key."""
    items = tuple(float(v) for v in plain(values))
    if len(items) != length:
        raise ValueError(f"{name} needs {length} values, got {values!r}")
    return items


def checked_range(values: Sequence[float] | None, name: str) -> tuple[float, float] | None:
    """A (low, high) multiplier range with 0 < low <= high, or None; a ValueError names the key otherwise."""
    if values is None:
        return None
    low, high = (float(v) for v in values)
    if not 0 < low <= high:
        raise ValueError(f"{name} must satisfy 0 < low <= high, got {values!r}")
    return low, high


def rank_seed(seed: int, rank: int) -> int:
    """A 32-bit augmentation seed for one DDP rank: distinct ranks get unrelated seeds from one `seed`.

    `seed_everything` gives every rank the same global seed, so anything seeded from it alone (torch's
    per-worker seeds included) draws the same augmentations on every rank; NumPy's SeedSequence mixes
    in the rank. Rank 0 keeps `seed` itself, so single-process runs draw what they always drew.
    """
    if rank == 0:
        return seed % 2**32
    return int(np.random.SeedSequence([seed % 2**32, rank]).generate_state(1)[0])


def global_rank(datamodule: L.LightningDataModule) -> int:
    """The rank of the process a datamodule runs in (0 until a trainer is attached)."""
    trainer = getattr(datamodule, "trainer", None)
    return trainer.global_rank if trainer is not None else 0


def main_process_seed(datamodule: L.LightningDataModule) -> int:
    """The seed of a datamodule's training pipeline as the main process uses it (num_workers == 0).

    It follows `seed_everything`, per rank; worker processes reseed in `seed_worker_transform`.
    """
    return rank_seed(torch.initial_seed(), global_rank(datamodule))


def seed_worker_transform(worker_id: int, rank: int = 0) -> None:
    """DataLoader ``worker_init_fn``: give each worker's albumentations pipeline its own seed.

    Albumentations keeps private random generators that forked workers would otherwise share, so
    every worker would draw the same augmentations. ``torch.initial_seed()`` inside a worker is
    torch's per-worker (and per-epoch) seed, which ``seed_everything`` makes reproducible and equal
    on every rank; `rank` makes it differ between ranks (this replaces Lightning's rank-aware
    worker seeding, which Lightning adds only to loaders without a ``worker_init_fn``).

    Args:
        worker_id: Index of the worker (unused; the seed already differs per worker).
        rank: the process's global rank.
    """
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(rank_seed(torch.initial_seed(), rank))


def train_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool, source: str,
                 collate_fn: Callable | None = None, rank: int = 0) -> DataLoader:
    """Shuffled, drop-last loader with per-worker, per-rank augmentation seeds.

    Args:
        dataset: the training dataset.
        batch_size: images per batch.
        num_workers: loader processes.
        pin_memory: pin batches for faster host-to-GPU copies.
        source: the split's location, named in the error for a split smaller than a batch.
        collate_fn: batch assembly (None: torch's default stacking).
        rank: the process's global rank (see `seed_worker_transform`).

    Returns:
        The DataLoader.
    """
    if len(dataset) < batch_size:
        raise ValueError(
            f"the training split {source} has {len(dataset)} usable images, fewer than batch_size={batch_size}; "
            "with drop_last=True no batch would be produced. Lower data.batch_size."
        )
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      worker_init_fn=partial(seed_worker_transform, rank=rank), collate_fn=collate_fn)


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool,
                collate_fn: Callable) -> DataLoader:
    """In-order loader; under DDP every image goes to exactly one rank (see `unrepeated_sampler`)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=unrepeated_sampler(dataset), num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0, collate_fn=collate_fn)
