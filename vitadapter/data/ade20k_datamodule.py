"""Lightning DataModule for ADE20K-layout semantic segmentation (real data or the synthetic shapes set).

``SegmentationDataModule`` configured for ``ADEChallengeData2016``, plus the synthetic set writer.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from vitadapter.data.ade20k_classes import ADE20K_CLASSES
from vitadapter.data.ade20k_dataset import EXPECTED_LAYOUT, HOW_TO_GET, IMAGE_SUFFIXES, LABEL_SUFFIX
from vitadapter.data.loaders import plain
from vitadapter.data.seg_datamodule import SegmentationDataModule, collate_as_lists
from vitadapter.data.synthetic.ade20k_writer import (
    SYNTHETIC_CLASS_NAMES,
    is_synthetic_ade20k_complete,
    write_synthetic_ade20k,
)

__all__ = ["ADE20KDataModule", "collate_as_lists"]


class ADE20KDataModule(SegmentationDataModule):
    """ADE20K train/val loaders with the mmseg augmentation recipe.

    Args:
        root: Dataset root (``ADEChallengeData2016`` or a synthetic set).
        class_names: Class names; None gives the 150 ADE20K names, or the synthetic shape names
            when ``synthetic`` is set.
        reduce_zero_label: Map label 0 ("other") to ignore and k to k-1 (the ADE20K convention).
        synthetic: Keyword arguments of ``write_synthetic_ade20k`` (num_train, num_val, image_size,
            max_objects, seed); when set, ``prepare_data`` writes that set into ``root``.
        **kwargs: The recipe and loader arguments of ``SegmentationDataModule`` (batch_size,
            val_batch_size, num_workers, crop_size, train_scale, ratio_range, cat_max_ratio, test_scale,
            ignore_index, mean, std, pin_memory, skip_bad_samples).
    """

    def __init__(
        self,
        root: str,
        class_names: Sequence[str] | None = None,
        reduce_zero_label: bool = True,
        synthetic: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.synthetic: dict[str, Any] | None = plain(synthetic) if synthetic is not None else None
        if self.synthetic is not None:
            allowed = set(inspect.signature(write_synthetic_ade20k).parameters) - {"root"}
            unknown = sorted(set(self.synthetic) - allowed)
            if unknown:
                raise ValueError(f"unknown data.synthetic key(s) {unknown}; allowed: {sorted(allowed)}")
        if class_names is None:
            class_names = SYNTHETIC_CLASS_NAMES if self.synthetic is not None else ADE20K_CLASSES
        super().__init__(
            root,
            train_split={"img_dir": "images/training", "ann_dir": "annotations/training"},
            val_split={"img_dir": "images/validation", "ann_dir": "annotations/validation"},
            img_suffix=IMAGE_SUFFIXES,
            seg_map_suffix=LABEL_SUFFIX,
            class_names=class_names,
            reduce_zero_label=reduce_zero_label,
            dataset_name="ADE20K",
            layout_hint=f"Expected layout:\n{EXPECTED_LAYOUT}\n{HOW_TO_GET}",
            **kwargs,
        )

    def check_data(self) -> None:
        """Raise if the dataset is missing, unless ``prepare_data`` will write the synthetic set."""
        if self.synthetic is None:
            super().check_data()

    def prepare_data(self) -> None:
        """Write the synthetic set into ``root`` if requested and not already there with the same parameters."""
        if self.synthetic is None:
            return
        if not is_synthetic_ade20k_complete(self.root, **self.synthetic):
            write_synthetic_ade20k(self.root, **self.synthetic)
