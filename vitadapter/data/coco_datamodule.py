"""Lightning DataModule for COCO-layout detection / instance segmentation (real data or synthetic shapes)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from vitadapter.data.bad_samples import skip_policy
from vitadapter.data.coco_dataset import COCODetectionDataset, check_split_files, split_paths
from vitadapter.data.coco_layout_datamodule import COCOLayoutDataModule
from vitadapter.data.det_transforms import build_det_train_transform, build_det_val_transform
from vitadapter.data.synthetic.coco_writer import (
    SYNTHETIC_COCO_CATEGORY_IDS,
    is_synthetic_coco_complete,
    write_synthetic_coco,
)
from vitadapter.data.synthetic.shapes import SHAPE_CLASSES

# COCO 2017 instances categories (id, name): the label map before the annotation files are downloaded.
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"),
    (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"),
    (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"),
    (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"),
    (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"),
    (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"),
    (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"),
    (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"),
    (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"),
    (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)  # fmt: skip


def collate_detection(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Collate detection samples into lists (images differ in size, targets in length).

    Args:
        samples: ``COCODetectionDataset`` items.

    Returns:
        ``{"images", "targets", "image_ids", "orig_sizes", "scales"}``, one list entry per sample.
    """
    return {
        "images": [s["image"] for s in samples],
        "targets": [s["target"] for s in samples],
        "image_ids": [s["image_id"] for s in samples],
        "orig_sizes": [s["orig_size"] for s in samples],
        "scales": [s["scale"] for s in samples],
    }


class COCODataModule(COCOLayoutDataModule):
    """COCO train/val loaders with ViTDet large-scale jitter for training.

    The arguments not listed are ``COCOLayoutDataModule``'s.

    Args:
        train_ann_file: Training annotation file of any COCO-format dataset, instead of
            ``annotations/instances_<train_split>.json`` (relative to ``root``, or absolute).
        train_img_dir: Training image folder instead of ``<train_split>`` (relative to ``root``, or absolute).
        val_ann_file: Evaluation annotation file, as ``train_ann_file``.
        val_img_dir: Evaluation image folder, as ``train_img_dir``.
        skip_empty_train: Leave out training images without a usable annotation.
        synthetic: Keyword arguments of ``write_synthetic_coco`` (num_train, num_val, image_size,
            max_objects, seed); when set, ``prepare_data`` writes that set into ``root``.
    """

    write_synthetic = staticmethod(write_synthetic_coco)
    is_synthetic_complete = staticmethod(is_synthetic_coco_complete)
    split_paths = staticmethod(split_paths)
    check_split_files = staticmethod(check_split_files)
    collate = staticmethod(collate_detection)
    train_set: COCODetectionDataset | None
    val_set: COCODetectionDataset | None
    _categories: list[tuple[int, str]] | None

    def __init__(
        self,
        root: str,
        batch_size: int = 2,
        val_batch_size: int = 2,
        num_workers: int = 4,
        image_size: int = 1024,
        scale_range: Sequence[float] = (0.1, 2.0),
        train_split: str = "train2017",
        val_split: str = "val2017",
        train_ann_file: str | None = None,
        train_img_dir: str | None = None,
        val_ann_file: str | None = None,
        val_img_dir: str | None = None,
        skip_empty_train: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        synthetic: Mapping[str, Any] | None = None,
        pin_memory: bool = False,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__(root, batch_size, val_batch_size, num_workers, image_size, scale_range, train_split, val_split,
                         {"ann_file": train_ann_file, "img_dir": train_img_dir},
                         {"ann_file": val_ann_file, "img_dir": val_img_dir},
                         mean, std, synthetic, pin_memory, skip_bad_samples)
        self.save_hyperparameters(logger=False)
        self.skip_empty_train = bool(skip_empty_train)

    def _category_list(self) -> list[tuple[int, str]]:
        """(COCO id, name) sorted by id: the synthetic set's, else the evaluation json's, else COCO 2017's.

        ``setup`` checks the datasets against this list, so a json that disagrees with a label map
        handed out before the download fails loudly there.
        """
        if self._categories is None:
            path = self.val_annotation_file
            if self.synthetic is not None:
                self._categories = list(zip(SYNTHETIC_COCO_CATEGORY_IDS, SHAPE_CLASSES))
            elif path.is_file():
                try:
                    cats = json.loads(path.read_text()).get("categories", [])
                except json.JSONDecodeError as err:
                    raise ValueError(f"cannot parse COCO annotation file {path}: {err}. Re-download or fix it") from err
                self._categories = sorted((int(c["id"]), str(c["name"])) for c in cats)
            else:
                self._categories = list(COCO_CATEGORIES)
        return self._categories

    @property
    def class_names(self) -> list[str]:
        """Class names in contiguous-label order (COCO category ids ascending)."""
        return [name for _, name in self._category_list()]

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def contiguous_to_category_id(self) -> dict[int, int]:
        """Contiguous label -> COCO category id (for ``COCOEvaluator``)."""
        return {i: cid for i, (cid, _) in enumerate(self._category_list())}

    def _check_categories(self, dataset: COCODetectionDataset) -> None:
        if dataset.category_ids != [cid for cid, _ in self._category_list()]:
            raise ValueError(
                f"{dataset.annotation_file} lists category ids {dataset.category_ids}, which differ from the "
                f"evaluation split's {[cid for cid, _ in self._category_list()]}; both splits must share one label map."
            )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets: train and val for "fit" (or None), val for "validate", "test" and "predict".

        Args:
            stage: Lightning stage name.
        """
        if stage in (None, "fit") and self.train_set is None:
            train_tf = build_det_train_transform(
                self.image_size,
                scale_range=self.scale_range,
                mean=self.mean,
                std=self.std,
                seed=torch.initial_seed(),  # training samples reseed it (see resumable_loading)
            )
            self.train_set = COCODetectionDataset(
                self.root, self.train_split, transform=train_tf, skip_empty=self.skip_empty_train, **self.train_files,
                on_bad_sample=skip_policy(self.skip_bad_samples, training=True),
            )
            self._check_categories(self.train_set)
        if self.val_set is None:
            val_tf = build_det_val_transform(self.image_size, mean=self.mean, std=self.std)
            # masks are not needed: COCOeval reads the ground truth from the annotation file
            self.val_set = COCODetectionDataset(self.root, self.val_split, transform=val_tf, with_masks=False,
                                                **self.val_files,
                                                on_bad_sample=skip_policy(self.skip_bad_samples, training=False))
            self._check_categories(self.val_set)
