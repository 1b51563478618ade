"""Lightning DataModule for COCO-panoptic-layout data (real COCO panoptic 2017 or the synthetic shapes and textures)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vitadapter.data.bad_samples import skip_policy
from vitadapter.data.coco_layout_datamodule import COCOLayoutDataModule
from vitadapter.data.coco_panoptic_categories import COCO_PANOPTIC_CATEGORIES
from vitadapter.data.coco_panoptic_dataset import COCOPanopticDataset, check_split_files, read_categories, split_paths
from vitadapter.data.coco_panoptic_transforms import build_panoptic_train_transform, build_panoptic_val_transform
from vitadapter.data.loaders import plain
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


class COCOPanopticDataModule(COCOLayoutDataModule):
    """COCO panoptic train/val loaders with large-scale jitter for training.

    The arguments not listed are ``COCOLayoutDataModule``'s.

    Args:
        train_files: ``ann_file`` / ``png_dir`` / ``img_dir`` of the training split of any COCO-panoptic-format
            dataset, relative to ``root`` or absolute (missing keys: the COCO layout).
        val_files: The same for the evaluation split.
        synthetic: Keyword arguments of ``write_synthetic_coco_panoptic``; when set, ``prepare_data`` writes that
            set into ``root``.
    """

    write_synthetic = staticmethod(write_synthetic_coco_panoptic)
    is_synthetic_complete = staticmethod(is_synthetic_coco_panoptic_complete)
    split_paths = staticmethod(split_paths)
    check_split_files = staticmethod(check_split_files)
    collate = staticmethod(collate_panoptic)
    train_set: COCOPanopticDataset | None
    val_set: COCOPanopticDataset | None
    _categories: list[dict[str, Any]] | None

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
        super().__init__(root, batch_size, val_batch_size, num_workers, image_size, scale_range, train_split, val_split,
                         self._files(train_files, "train_files"), self._files(val_files, "val_files"),
                         mean, std, synthetic, pin_memory, skip_bad_samples)
        self.save_hyperparameters(logger=False)

    @staticmethod
    def _files(files: Mapping[str, str | None] | None, name: str) -> dict[str, str | None]:
        files = plain(files) if files is not None else {}
        unknown = sorted(set(files) - {"ann_file", "png_dir", "img_dir"})
        if unknown:
            raise ValueError(f"unknown data.{name} key(s) {unknown}; allowed: ann_file, png_dir, img_dir")
        return dict(files)

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
