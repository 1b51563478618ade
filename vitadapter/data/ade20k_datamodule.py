"""Lightning DataModule for ADE20K-layout semantic segmentation (real data or the synthetic shapes set)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from vitadapter.data.ade20k_classes import ADE20K_CLASSES
from vitadapter.data.ade20k_dataset import ADE20KDataset
from vitadapter.data.bad_samples import skip_policy
from vitadapter.data.loaders import eval_loader, floats, plain, train_loader, training_shard
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD, build_train_transform, build_val_transform
from vitadapter.data.synthetic.ade20k_writer import (
    SYNTHETIC_CLASS_NAMES,
    is_synthetic_ade20k_complete,
    write_synthetic_ade20k,
)


def _crop_hw(crop_size: int | Sequence[int]) -> tuple[int, int]:
    crop = plain(crop_size)
    return (int(crop), int(crop)) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))


def collate_as_lists(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Collate samples of different sizes into lists per key (used for evaluation).

    Args:
        samples: Dataset items.

    Returns:
        ``{"image": [3×h×w, ...], "mask": [H×W, ...], "name": [str, ...]}`` (empty lists for no samples:
        an evaluation batch whose images were all skipped as bad).
    """
    return {key: [s[key] for s in samples] for key in ("image", "mask", "name")}


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
        skip_bad_samples: Skip bad files (a corrupt or truncated image or label, a label of another
            size than its image, labels outside the classes) instead of raising: a training sample is
            replaced by the next good one, an evaluation image is left out of the scores; both are
            reported in metrics.json (see ``vitadapter.data.bad_samples``).
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
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = Path(str(root))
        self.synthetic: dict[str, Any] | None = plain(synthetic) if synthetic is not None else None
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
        self.train_scale: tuple[int, ...] = plain(train_scale)
        self.ratio_range: tuple[float, ...] | None = plain(ratio_range)
        self.cat_max_ratio = float(cat_max_ratio)
        self.test_scale: tuple[int, ...] = plain(test_scale)
        self.reduce_zero_label = bool(reduce_zero_label)
        self.ignore_index = int(ignore_index)
        # None (the config default) means "the backbone's statistics", which the builder passes to
        # set_normalization; until then ImageNet's, which most timm ViTs use.
        self.mean: tuple[float, ...] = floats(IMAGENET_MEAN if mean is None else mean, "mean", 3)
        self.std: tuple[float, ...] = floats(IMAGENET_STD if std is None else std, "std", 3)
        self.pin_memory = bool(pin_memory)
        self.skip_bad_samples = bool(skip_bad_samples)
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
        self.mean, self.std = floats(mean, "mean", 3), floats(std, "std", 3)
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
            on_bad_sample=skip_policy(self.skip_bad_samples, training=split == "training"),
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
                seed=torch.initial_seed(),  # training samples reseed it (see resumable_loading)
            )
            self.train_set = self._dataset("training", train_tf)
        if self.val_set is None:
            val_tf = build_val_transform(scale=self.test_scale, mean=self.mean, std=self.std)
            self.val_set = self._dataset("validation", val_tf)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, drop-last loader with default collation into B×3×H×W / B×H×W tensors."""
        if self.train_set is None:
            self.setup("fit")
        return train_loader(self.train_set, self.batch_size, self.num_workers, self.pin_memory,
                            source=f"{self.root}/images/training", **training_shard(self))

    def val_dataloader(self) -> DataLoader:
        """Ordered loader whose batches are lists (images rescaled, masks at original size)."""
        if self.val_set is None:
            self.setup("validate")
        return eval_loader(self.val_set, self.val_batch_size, self.num_workers, self.pin_memory, collate_as_lists)

    def test_dataloader(self) -> DataLoader:
        """Same as ``val_dataloader`` (ADE20K has no public test labels)."""
        return self.val_dataloader()
