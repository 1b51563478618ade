"""What both datamodules share: plain config values and the train / evaluation DataLoaders."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from vitadapter.data.bad_samples import CollateWithSkips
from vitadapter.data.distributed import unrepeated_sampler
from vitadapter.data.resumable_loading import ResumableDataLoader, ResumableShardSampler


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


def global_rank(datamodule: L.LightningDataModule) -> int:
    """The rank of the process a datamodule runs in (0 until a trainer is attached)."""
    trainer = getattr(datamodule, "trainer", None)
    return trainer.global_rank if trainer is not None else 0


def training_shard(datamodule: L.LightningDataModule) -> dict[str, int]:
    """`train_loader`'s seed, rank and num_ranks for the process a datamodule runs in (1 rank until a
    trainer is attached); the seed is `seed_everything`'s, equal on every rank."""
    trainer = getattr(datamodule, "trainer", None)
    return {"seed": torch.initial_seed(), "rank": global_rank(datamodule),
            "num_ranks": trainer.world_size if trainer is not None else 1}


def train_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool, source: str,
                 collate_fn: Callable | None = None, seed: int = 0, rank: int = 0,
                 num_ranks: int = 1) -> ResumableDataLoader:
    """Shuffled, drop-last loader that a checkpoint can stop and restart at any batch (see `resumable_loading`).

    The sampler is already distributed (one shard per rank; Lightning keeps it under DDP), shuffles by
    `seed` + epoch and seeds every sample's augmentations from `seed`, the rank, the epoch and the image.
    A private generator draws the worker base seed, so iterating the loader leaves the global RNG alone.
    Batches list the bad files their samples skipped under "skipped" (see `vitadapter.data.bad_samples`).

    Args:
        dataset: the training dataset.
        batch_size: images per batch.
        num_workers: loader processes.
        pin_memory: pin batches for faster host-to-GPU copies.
        source: the split's location, named in the error for a split smaller than a batch.
        collate_fn: batch assembly (None: torch's default stacking).
        seed: the run's seed (equal on every rank).
        rank: the process's global rank.
        num_ranks: the number of processes (the sampler's shards).

    Returns:
        The DataLoader.
    """
    sampler = ResumableShardSampler(dataset, num_replicas=num_ranks, rank=rank, shuffle=True, seed=seed)
    if len(sampler) < batch_size:
        per_rank = f" ({len(sampler)} per rank of {num_ranks})" if num_ranks > 1 else ""
        raise ValueError(
            f"the training split {source} has {len(dataset)} usable images{per_rank}, fewer than "
            f"batch_size={batch_size}; with drop_last=True no batch would be produced. Lower data.batch_size."
        )
    return ResumableDataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=num_workers,
                               pin_memory=pin_memory, persistent_workers=num_workers > 0,
                               collate_fn=CollateWithSkips(collate_fn), generator=torch.Generator().manual_seed(seed))


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool,
                collate_fn: Callable) -> DataLoader:
    """In-order loader; under DDP every image goes to exactly one rank (see `unrepeated_sampler`).

    Its own generator keeps validation inside a training run from drawing on the global RNG, which would
    make a run resumed from a checkpoint saved just before a validation draw differently. Batches list the
    bad files their samples skipped under "skipped"; `collate_fn` must accept an empty list (all skipped).
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=unrepeated_sampler(dataset), num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      collate_fn=CollateWithSkips(collate_fn), generator=torch.Generator())
