"""Lightning DataModule for ADE20K-layout semantic segmentation (real data or the synthetic shapes set)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, get_worker_info

from vitadapter.data.ade20k_classes import ADE20K_CLASSES
from vitadapter.data.ade20k_dataset import ADE20KDataset
from vitadapter.data.distributed import unrepeated_sampler
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD, build_train_transform, build_val_transform
from vitadapter.data.synthetic.ade20k_writer import (
    SYNTHETIC_CLASS_NAMES,
    is_synthetic_ade20k_complete,
    write_synthetic_ade20k,
)


def _plain(value: Any) -> Any:
    """Turn OmegaConf ListConfig/DictConfig (or any nested sequence/mapping) into tuples and dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(_plain(v) for v in value)
    return value


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    items = tuple(float(v) for v in _plain(values))
    if len(items) != 3:
        raise ValueError(f"mean/std need one value per RGB channel, got {values!r}")
    return items


def _crop_hw(crop_size: int | Sequence[int]) -> tuple[int, int]:
    crop = _plain(crop_size)
    return (int(crop), int(crop)) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))


def seed_worker_transform(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker's albumentations pipeline its own seed.

    Albumentations keeps private random generators that forked workers would otherwise share, so
    every worker would draw the same augmentations. ``torch.initial_seed()`` inside a worker is
    torch's per-worker (and per-epoch) seed, which ``seed_everything`` makes reproducible.

    Args:
        worker_id: Index of the worker (unused; the seed already differs per worker).
    """
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(torch.initial_seed() % 2**32)


def collate_as_lists(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Collate samples of different sizes into lists per key (used for evaluation).

    Args:
        samples: Dataset items.

    Returns:
        ``{"image": [3×h×w, ...], "mask": [H×W, ...], "name": [str, ...]}``.
    """
    return {key: [s[key] for s in samples] for key in samples[0]}


class ADE20KDataModule(L.LightningDataModule):
    """ADE20K train/val loaders with the mmseg augmentation recipe.

    Args:
        root: Dataset root (``ADEChallengeData2016`` or a synthetic set).
        class_names: Class names; None gives the 150 ADE20K names, or the synthetic shape names
            when ``synthetic`` is set.
        batch_size: Training batch size.
        val_batch_size: Evaluation batch size (images keep their own sizes; batches are lists).
        num_workers: DataLoader workers.
        crop_size: Training crop, int or (height, width).
        train_scale: Training rescale box (long, short).
        ratio_range: Random multiplier range of the training box.
        cat_max_ratio: Crop rejection threshold.
        test_scale: Evaluation rescale box (long, short).
        reduce_zero_label: Map label 0 to ignore and k to k-1.
        ignore_index: Ignore label.
        mean: Normalisation mean in 0..1 units; None gives ImageNet's until ``set_normalization``
            provides the backbone's.
        std: Normalisation std in 0..1 units; None as for ``mean``.
        synthetic: Keyword arguments of ``write_synthetic_ade20k`` (num_train, num_val, image_size,
            max_objects, seed); when set, ``prepare_data`` writes that set into ``root``.
        pin_memory: DataLoader ``pin_memory``.
    """

    def __init__(
        self,
        root: str,
        class_names: Sequence[str] | None = None,
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 4,
        crop_size: int | Sequence[int] = 512,
        train_scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] | None = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        test_scale: Sequence[int] = (2048, 512),
        reduce_zero_label: bool = True,
        ignore_index: int = 255,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        synthetic: Mapping[str, Any] | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = Path(str(root))
        self.synthetic: dict[str, Any] | None = _plain(synthetic) if synthetic is not None else None
        if self.synthetic is not None:
            allowed = set(inspect.signature(write_synthetic_ade20k).parameters) - {"root"}
            unknown = sorted(set(self.synthetic) - allowed)
            if unknown:
                raise ValueError(f"unknown data.synthetic key(s) {unknown}; allowed: {sorted(allowed)}")
        if class_names is None:
            class_names = SYNTHETIC_CLASS_NAMES if self.synthetic is not None else ADE20K_CLASSES
        self.class_names: list[str] = [str(c) for c in class_names]
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.num_workers = int(num_workers)
        self.crop_size = _crop_hw(crop_size)
        self.train_scale: tuple[int, ...] = _plain(train_scale)
        self.ratio_range: tuple[float, ...] | None = _plain(ratio_range)
        self.cat_max_ratio = float(cat_max_ratio)
        self.test_scale: tuple[int, ...] = _plain(test_scale)
        self.reduce_zero_label = bool(reduce_zero_label)
        self.ignore_index = int(ignore_index)
        # None (the config default) means "the backbone's statistics", which the builder passes to
        # set_normalization; until then ImageNet's, which most timm ViTs use.
        self.mean: tuple[float, ...] = _floats(IMAGENET_MEAN if mean is None else mean)
        self.std: tuple[float, ...] = _floats(IMAGENET_STD if std is None else std)
        self.pin_memory = bool(pin_memory)
        self.train_set: ADE20KDataset | None = None
        self.val_set: ADE20KDataset | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use the backbone's normalisation; call before ``setup``.

        Args:
            mean: Per-channel mean in 0..1 units.
            std: Per-channel std in 0..1 units.
        """
        self.mean, self.std = _floats(mean), _floats(std)
        self.train_set = self.val_set = None  # rebuilt with the new statistics on the next setup

    def prepare_data(self) -> None:
        """Write the synthetic set into ``root`` if requested and not already there with the same parameters."""
        if self.synthetic is None:
            return
        if not is_synthetic_ade20k_complete(self.root, **self.synthetic):
            write_synthetic_ade20k(self.root, **self.synthetic)

    def _dataset(self, split: str, transform: Any) -> ADE20KDataset:
        return ADE20KDataset(
            self.root,
            split,
            transform=transform,
            reduce_zero_label=self.reduce_zero_label,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets: train and val for "fit" (or None), val for "validate", "test" and "predict".

        Args:
            stage: Lightning stage name.
        """
        if stage in (None, "fit") and self.train_set is None:
            train_tf = build_train_transform(
                self.crop_size,
                scale=self.train_scale,
                ratio_range=self.ratio_range,
                cat_max_ratio=self.cat_max_ratio,
                mean=self.mean,
                std=self.std,
                ignore_index=self.ignore_index,
                # follows seed_everything when num_workers == 0; workers reseed in seed_worker_transform
                seed=torch.initial_seed() % 2**32,
            )
            self.train_set = self._dataset("training", train_tf)
        if self.val_set is None:
            val_tf = build_val_transform(scale=self.test_scale, mean=self.mean, std=self.std)
            self.val_set = self._dataset("validation", val_tf)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, drop-last loader with default collation into B×3×H×W / B×H×W tensors."""
        if self.train_set is None:
            self.setup("fit")
        if self.train_set is None:  # unreachable after setup("fit"); narrows the type
            raise RuntimeError("training dataset was not built")
        if len(self.train_set) < self.batch_size:
            raise ValueError(
                f"the training split of {self.root} has {len(self.train_set)} images, fewer than "
                f"batch_size={self.batch_size}; with drop_last=True no batch would be produced. Lower data.batch_size."
            )
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker_transform,
        )

    def val_dataloader(self) -> DataLoader:
        """Ordered loader whose batches are lists (images rescaled, masks at original size)."""
        if self.val_set is None:
            self.setup("validate")
        return DataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            sampler=unrepeated_sampler(self.val_set),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_as_lists,
        )

    def test_dataloader(self) -> DataLoader:
        """Same as ``val_dataloader`` (ADE20K has no public test labels)."""
        return self.val_dataloader()
