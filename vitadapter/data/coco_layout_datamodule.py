"""What the COCO instances and COCO panoptic datamodules share: options, the synthetic set, normalisation, loaders."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from vitadapter.data.loaders import eval_loader, floats, plain, train_loader, training_shard
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD


class COCOLayoutDataModule(L.LightningDataModule):
    """Train/val loaders of a dataset in a COCO 2017 layout; a subclass names its format's functions below.

    A subclass sets the class attributes (as staticmethods), builds ``train_set`` and ``val_set`` in ``setup``
    and saves its own hyper-parameters.

    Args:
        root: Dataset root (holding ``annotations/`` and the image folders).
        batch_size: Training batch size.
        val_batch_size: Evaluation batch size.
        num_workers: DataLoader workers.
        image_size: Training crop / padding side and evaluation longer side.
        scale_range: Large-scale-jitter range of the longer side, in units of ``image_size``.
        train_split: Training split name (image folder and annotation suffix).
        val_split: Evaluation split name.
        train_files: Paths of the training split that differ from the COCO layout, as ``split_paths`` takes them.
        val_files: The same for the evaluation split.
        mean: Normalisation mean in 0..1 units; None gives ImageNet's until ``set_normalization`` provides the
            backbone's.
        std: Normalisation std in 0..1 units; None as for ``mean``.
        synthetic: Keyword arguments of ``write_synthetic``; when set, ``prepare_data`` writes that set into ``root``.
        pin_memory: DataLoader ``pin_memory``.
        skip_bad_samples: Skip files that cannot be read or disagree with the annotations instead of raising: a
            training sample is replaced by the next good one, an evaluation image is left out of the scores; both
            are reported in metrics.json (see ``vitadapter.data.bad_samples``).
    """

    write_synthetic: Callable[..., Path]  # (root, **synthetic): writes the synthetic set
    is_synthetic_complete: Callable[..., bool]  # (root, **synthetic): that set is already there
    split_paths: Callable[..., tuple[Path, ...]]  # (root, split, **files): the annotation file first
    check_split_files: Callable[..., None]  # (root, split, **files): FileNotFoundError with the download hint
    collate: Callable[[list[dict[str, Any]]], dict[str, list[Any]]]

    def __init__(
        self,
        root: str,
        batch_size: int,
        val_batch_size: int,
        num_workers: int,
        image_size: int,
        scale_range: Sequence[float],
        train_split: str,
        val_split: str,
        train_files: dict[str, str | None],
        val_files: dict[str, str | None],
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        synthetic: Mapping[str, Any] | None,
        pin_memory: bool,
        skip_bad_samples: bool,
    ) -> None:
        super().__init__()
        self.root = Path(str(root))
        self.synthetic: dict[str, Any] | None = plain(synthetic) if synthetic is not None else None
        if self.synthetic is not None:
            allowed = set(inspect.signature(self.write_synthetic).parameters) - {"root"}
            unknown = sorted(set(self.synthetic) - allowed)
            if unknown:
                raise ValueError(f"unknown data.synthetic key(s) {unknown}; allowed: {sorted(allowed)}")
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.num_workers = int(num_workers)
        self.image_size = int(image_size)
        self.scale_range: tuple[float, ...] = floats(scale_range, "scale_range", 2)
        self.train_split, self.val_split = str(train_split), str(val_split)
        self.train_files, self.val_files = train_files, val_files
        self.mean: tuple[float, ...] = floats(IMAGENET_MEAN if mean is None else mean, "mean", 3)
        self.std: tuple[float, ...] = floats(IMAGENET_STD if std is None else std, "std", 3)
        self.pin_memory = bool(pin_memory)
        self.skip_bad_samples = bool(skip_bad_samples)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self._categories: list[Any] | None = None

    @property
    def val_annotation_file(self) -> Path:
        """Ground-truth json of the evaluation split."""
        return self.split_paths(self.root, self.val_split, **self.val_files)[0]

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use the backbone's normalisation; call before ``setup``.

        Args:
            mean: Per-channel mean in 0..1 units.
            std: Per-channel std in 0..1 units.
        """
        self.mean, self.std = floats(mean, "mean", 3), floats(std, "std", 3)
        self.train_set = self.val_set = None  # rebuilt with the new statistics on the next setup

    def check_data(self) -> None:
        """Raise the dataset's FileNotFoundError (layout and download hint) if a file or folder of a split is
        missing, before the model is built; nothing to check when ``prepare_data`` writes a synthetic set."""
        if self.synthetic is None:
            self.check_split_files(self.root, self.train_split, **self.train_files)
            self.check_split_files(self.root, self.val_split, **self.val_files)

    def prepare_data(self) -> None:
        """Write the synthetic set into ``root`` if requested and not already there with the same parameters."""
        if self.synthetic is not None and not self.is_synthetic_complete(self.root, **self.synthetic):
            self.write_synthetic(self.root, **self.synthetic)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, drop-last loader of list batches (see ``collate``)."""
        if self.train_set is None:
            self.setup("fit")
        return train_loader(self.train_set, self.batch_size, self.num_workers, self.pin_memory,
                            source=f"{self.train_split} of {self.root}", collate_fn=self.collate,
                            **training_shard(self))

    def val_dataloader(self) -> DataLoader:
        """Ordered loader; under DDP each image goes to exactly one rank (Lightning's UnrepeatedDistributedSampler)."""
        if self.val_set is None:
            self.setup("validate")
        return eval_loader(self.val_set, self.val_batch_size, self.num_workers, self.pin_memory, self.collate)

    def test_dataloader(self) -> DataLoader:
        """Same as ``val_dataloader`` (COCO test-dev has no public annotations)."""
        return self.val_dataloader()
