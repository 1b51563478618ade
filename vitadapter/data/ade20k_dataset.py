"""ADE20K (ADEChallengeData2016 / SceneParse150) semantic segmentation dataset.

Reads the official layout (also written by ``vitadapter.data.synthetic.write_synthetic_ade20k``)::

    root/images/{training,validation}/*.jpg
    root/annotations/{training,validation}/*.png    (same stem, uint8 labels 0..150, 0 = "other")

It is ``SegmentationDataset`` configured for that layout; labels are checked as there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vitadapter.data.seg_dataset import SegmentationDataset, reduce_zero_label, restore_zero_label

__all__ = ["ADE20KDataset", "EXPECTED_LAYOUT", "SPLITS", "reduce_zero_label", "restore_zero_label"]

SPLITS: tuple[str, ...] = ("training", "validation")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
LABEL_SUFFIX = ".png"
EXPECTED_LAYOUT = """\
  <root>/                      e.g. data/ADEChallengeData2016
    images/training/*.jpg
    images/validation/*.jpg
    annotations/training/*.png     (same file stem as the image)
    annotations/validation/*.png"""
HOW_TO_GET = (
    "Download it with `bash scripts/download_ade20k.sh data/` or point the config at an existing copy "
    "with `data.root=/path/to/ADEChallengeData2016`."
)


class ADE20KDataset(SegmentationDataset):
    """Images and label maps of one ADE20K split.

    Args:
        root: Dataset root (the folder holding ``images/`` and ``annotations/``).
        split: "training" or "validation".
        transform: Albumentations Compose called as ``transform(image=..., mask=...)`` (or with the
            image only, see ``transform_mask``); None returns the decoded numpy arrays.
        reduce_zero_label: Map 0 -> ignore and k -> k-1 (the ADE20K convention for 150 classes).
        num_classes: Number of classes; labels outside [0, num_classes) other than ignore raise.
        ignore_index: Label value meaning "ignore".
        transform_mask: Whether the transform also sees the mask. None means True for "training" and
            False for "validation", where the image is rescaled but the mask stays at its original size.
        on_bad_sample: What a bad file does (see ``vitadapter.data.bad_samples``): "raise" a
            ``BadSampleError``; "replace" the sample by the next good one (training); "drop" it (evaluation).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[..., dict[str, Any]] | None = None,
        reduce_zero_label: bool = True,
        num_classes: int = 150,
        ignore_index: int = 255,
        transform_mask: bool | None = None,
        on_bad_sample: str = "raise",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        super().__init__(
            self.root / "images" / split,
            self.root / "annotations" / split,
            img_suffix=IMAGE_SUFFIXES,
            seg_map_suffix=LABEL_SUFFIX,
            transform=transform,
            reduce_zero_label=reduce_zero_label,
            num_classes=num_classes,
            ignore_index=ignore_index,
            transform_mask=(split == "training") if transform_mask is None else transform_mask,
            on_bad_sample=on_bad_sample,
            split_name=split,
            dataset_name="ADE20K",
            layout_hint=f"Expected layout:\n{EXPECTED_LAYOUT}\n{HOW_TO_GET}",
        )
