"""Lightning DataModule for COCO-panoptic-layout data (real COCO panoptic 2017 or the synthetic shapes and textures)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from vitadapter.data.bad_samples import skip_policy
from vitadapter.data.coco_panoptic_categories import COCO_PANOPTIC_CATEGORIES
from vitadapter.data.coco_panoptic_dataset import COCOPanopticDataset, check_split_files, read_categories, split_paths
from vitadapter.data.coco_panoptic_transforms import build_panoptic_train_transform, build_panoptic_val_transform
from vitadapter.data.loaders import eval_loader, floats, plain, train_loader, training_shard
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD
from vitadapter.data.synthetic.panoptic_writer import (
    is_synthetic_coco_panoptic_complete,
    synthetic_panoptic_categories,
    write_synthetic_coco_panoptic,
)


def collate_panoptic(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Collate panoptic samples into one list per key (segments differ in number, evaluation images in size).

    Args:
        samples: ``COCOPanopticDataset`` items (all training or all evaluation samples).

    Returns:
        ``{key: [value of each sample]}`` for the keys of the samples (training: image, masks, labels, iscrowd,
        name, image_id, scale; evaluation: image, scale, panoptic, segments_info, image_id, file_name, orig_size,
        name); ``{}`` for no samples (an evaluation batch whose images were all skipped as bad).
    """
    return {key: [s[key] for s in samples] for key in (samples[0] if samples else {})}


class COCOPanopticDataModule(L.LightningDataModule):
    """COCO panoptic train/val loaders with large-scale jitter for training.

    Args:
        root: Dataset root (holding ``annotations/`` and the image folders).
        batch_size: Training batch size.
        val_batch_size: Evaluation batch size.
        num_workers: DataLoader workers.
        image_size: Training crop / padding side and evaluation longer side.
        scale_range: Large-scale-jitter range of the longer side, in units of ``image_size``.
        train_split: Training split name (image folder and annotation suffix).
        val_split: Evaluation split name.
        train_files: ``ann_file`` / ``png_dir`` / ``img_dir`` of the training split of any COCO-panoptic-format
            dataset, relative to ``root`` or absolute (missing keys: the COCO layout).
        val_files: The same for the evaluation split.
        mean: Normalisation mean in 0..1 units; None gives ImageNet's until ``set_normalization`` provides the
            backbone's.
        std: Normalisation std in 0..1 units; None as for ``mean``.
        synthetic: Keyword arguments of ``write_synthetic_coco_panoptic``; when set, ``prepare_data`` writes that
            set into ``root``.
        pin_memory: DataLoader ``pin_memory``.
        skip_bad_samples: Skip bad images or PNGs instead of raising (see ``vitadapter.data.bad_samples``).
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 16,
        val_batch_size: int = 4,
        num_workers: int = 8,
        image_size: int = 1024,
        scale_range: Sequence[float] = (0.1, 2.0),
        train_split: str = "train2017",
        val_split: str = "val2017",
        train_files: Mapping[str, str | None] | None = None,
        val_files: Mapping[str, str | None] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        synthetic: Mapping[str, Any] | None = None,
        pin_memory: bool = False,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = Path(str(root))
        self.synthetic: dict[str, Any] | None = plain(synthetic) if synthetic is not None else None
        if self.synthetic is not None:
            allowed = set(inspect.signature(write_synthetic_coco_panoptic).parameters) - {"root"}
            unknown = sorted(set(self.synthetic) - allowed)
            if unknown:
                raise ValueError(f"unknown data.synthetic key(s) {unknown}; allowed: {sorted(allowed)}")
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.num_workers = int(num_workers)
        self.image_size = int(image_size)
        self.scale_range: tuple[float, ...] = floats(scale_range, "scale_range", 2)
        self.train_split, self.val_split = str(train_split), str(val_split)
        self.train_files, self.val_files = self._files(train_files, "train_files"), self._files(val_files, "val_files")
        self.mean: tuple[float, ...] = floats(IMAGENET_MEAN if mean is None else mean, "mean", 3)
        self.std: tuple[float, ...] = floats(IMAGENET_STD if std is None else std, "std", 3)
        self.pin_memory = bool(pin_memory)
        self.skip_bad_samples = bool(skip_bad_samples)
        self.train_set: COCOPanopticDataset | None = None
        self.val_set: COCOPanopticDataset | None = None
        self._categories: list[dict[str, Any]] | None = None

    @staticmethod
    def _files(files: Mapping[str, str | None] | None, name: str) -> dict[str, str | None]:
        files = plain(files) if files is not None else {}
        unknown = sorted(set(files) - {"ann_file", "png_dir", "img_dir"})
        if unknown:
            raise ValueError(f"unknown data.{name} key(s) {unknown}; allowed: ann_file, png_dir, img_dir")
        return dict(files)

    @property
    def val_annotation_file(self) -> Path:
        """Ground-truth json of the evaluation split."""
        return split_paths(self.root, self.val_split, **self.val_files)[0]

    @property
    def val_png_dir(self) -> Path:
        """Ground-truth PNG folder of the evaluation split."""
        return split_paths(self.root, self.val_split, **self.val_files)[1]

    def _category_list(self) -> list[dict[str, Any]]:
        """``{"id", "name", "isthing", "color"}`` by id: the synthetic set's, else the evaluation json's, else COCO's.

        ``setup`` checks the datasets against this list, so a json that disagrees with a label map handed out
        before the download fails loudly there.
        """
        if self._categories is None:
            path = self.val_annotation_file
            if self.synthetic is not None:
                self._categories = read_categories(path, {"categories": synthetic_panoptic_categories()})
            elif path.is_file():
                try:
                    document = json.loads(path.read_text())
                except json.JSONDecodeError as err:
                    raise ValueError(f"cannot parse COCO panoptic file {path}: {err}. Re-download or fix it") from err
                self._categories = read_categories(path, document)
            else:
                self._categories = [{"id": cid, "name": name, "isthing": isthing, "color": None}
                                    for cid, name, isthing in COCO_PANOPTIC_CATEGORIES]
        return self._categories

    @property
    def class_names(self) -> list[str]:
        """Class names in contiguous-label order (category ids ascending)."""
        return [c["name"] for c in self._category_list()]

    @property
    def num_classes(self) -> int:
        """Number of classes, things and stuff (``len(class_names)``)."""
        return len(self._category_list())

    @property
    def isthing(self) -> list[bool]:
        """Per class, whether it is a thing (countable instances) rather than stuff."""
        return [c["isthing"] for c in self._category_list()]

    @property
    def palette(self) -> list[tuple[int, int, int]] | None:
        """The categories' colours when every category has one, else None."""
        colors = [c["color"] for c in self._category_list()]
        return [tuple(int(v) for v in c) for c in colors] if all(c is not None for c in colors) else None

    @property
    def contiguous_to_category_id(self) -> dict[int, int]:
        """Contiguous label -> original category id (for writing results)."""
        return {i: c["id"] for i, c in enumerate(self._category_list())}

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use the backbone's normalisation; call before ``setup``."""
        self.mean, self.std = floats(mean, "mean", 3), floats(std, "std", 3)
        self.train_set = self.val_set = None  # rebuilt with the new statistics on the next setup

    def check_data(self) -> None:
        """Raise the dataset's FileNotFoundError (layout and download hint) if a json, PNG or image folder is
        missing, before the model is built; nothing to check when ``prepare_data`` writes a synthetic set."""
        if self.synthetic is None:
            check_split_files(self.root, self.train_split, **self.train_files)
            check_split_files(self.root, self.val_split, **self.val_files)

    def prepare_data(self) -> None:
        """Write the synthetic set into ``root`` if requested and not already there with the same parameters."""
        if self.synthetic is not None and not is_synthetic_coco_panoptic_complete(self.root, **self.synthetic):
            write_synthetic_coco_panoptic(self.root, **self.synthetic)

    def _check_categories(self, dataset: COCOPanopticDataset) -> None:
        expected = [(c["id"], c["isthing"]) for c in self._category_list()]
        if list(zip(dataset.category_ids, dataset.isthing)) != expected:
            raise ValueError(f"{dataset.annotation_file} lists categories (id, isthing) "
                             f"{list(zip(dataset.category_ids, dataset.isthing))}, which differ from {expected} (the "
                             "evaluation split's); both splits must share one label map.")

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets: train and val for "fit" (or None), val for "validate", "test" and "predict"."""
        if stage in (None, "fit") and self.train_set is None:
            transform = build_panoptic_train_transform(self.image_size, self.scale_range, self.mean, self.std,
                                                       seed=torch.initial_seed())  # samples reseed it
            self.train_set = COCOPanopticDataset(
                self.root, self.train_split, transform, training=True, **self.train_files,
                on_bad_sample=skip_policy(self.skip_bad_samples, training=True))
            self._check_categories(self.train_set)
        if self.val_set is None:
            self.val_set = COCOPanopticDataset(
                self.root, self.val_split, build_panoptic_val_transform(self.image_size, self.mean, self.std),
                training=False, **self.val_files, on_bad_sample=skip_policy(self.skip_bad_samples, training=False))
            self._check_categories(self.val_set)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, drop-last loader of list batches (see ``collate_panoptic``)."""
        if self.train_set is None:
            self.setup("fit")
        return train_loader(self.train_set, self.batch_size, self.num_workers, self.pin_memory,
                            source=f"{self.train_split} of {self.root}", collate_fn=collate_panoptic,
                            **training_shard(self))

    def val_dataloader(self) -> DataLoader:
        """Ordered loader; under DDP each image goes to exactly one rank."""
        if self.val_set is None:
            self.setup("validate")
        return eval_loader(self.val_set, self.val_batch_size, self.num_workers, self.pin_memory, collate_panoptic)

    def test_dataloader(self) -> DataLoader:
        """Same as ``val_dataloader`` (COCO test-dev has no public annotations)."""
        return self.val_dataloader()
