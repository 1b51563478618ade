"""Lightning DataModule for any semantic segmentation dataset laid out as image and label folders.

Every segmentation dataset is a configuration of this module (``vitadapter/configs/data/``): ADE20K,
Cityscapes, Pascal VOC and ``folder_seg`` (your own data). Each split names its image and label
folders (relative to ``root``) and optionally a split file; the module adds the mmseg augmentation
recipe (see ``vitadapter.data.seg_transforms``) and the loaders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from vitadapter.data.bad_samples import skip_policy
from vitadapter.data.loaders import eval_loader, floats, plain, train_loader, training_shard
from vitadapter.data.seg_dataset import IMAGE_SUFFIXES, SegmentationDataset
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD, build_train_transform, build_val_transform

SPLIT_KEYS = ("img_dir", "ann_dir", "split_file")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def crop_hw(crop_size: int | Sequence[int]) -> tuple[int, int]:
    """``crop_size`` as (height, width): one int gives a square."""
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


def read_classes_file(path: str | Path) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """Read a ``classes.txt``: one class name a line, in class-index order, optionally followed by ``#rrggbb``.

    Args:
        path: The file.

    Returns:
        (names, palette): the palette is None unless every class has a colour.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"class list not found: {path}. Create it with one class name a line in class-index order (line 1 = "
            "pixel value 0), optionally followed by a colour, e.g. `background #000000`; or set data.class_names."
        )
    names: list[str] = []
    colours: list[tuple[int, int, int] | None] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)
        colour = parts[-1] if len(parts) == 2 and parts[-1].startswith("#") else None
        if colour is not None and not _COLOUR.fullmatch(colour):
            raise ValueError(f"{path}:{number}: {colour!r} is not a #rrggbb colour")
        names.append(parts[0] if colour else line)
        colours.append(None if colour is None else tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)))
    if not names:
        raise ValueError(f"{path} lists no classes; write one class name a line (line 1 = pixel value 0)")
    if len(set(names)) != len(names):
        raise ValueError(f"{path} names a class twice: {sorted({n for n in names if names.count(n) > 1})}")
    palette = None if any(c is None for c in colours) else [c for c in colours if c is not None]
    return names, palette


def _split(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    spec = dict(plain(spec))
    unknown = sorted(set(spec) - set(SPLIT_KEYS))
    if unknown or "img_dir" not in spec or "ann_dir" not in spec:
        raise ValueError(f"data.{name} needs img_dir and ann_dir (and optionally split_file); got {sorted(spec)}")
    return {key: spec.get(key) for key in SPLIT_KEYS}


class SegmentationDataModule(L.LightningDataModule):
    """Train/val loaders of a segmentation dataset in image and label folders, with the mmseg recipe.

    Args:
        root: Dataset root; split folders and files are relative to it (or absolute).
        train_split: ``{img_dir, ann_dir, split_file}`` of the training split (split_file optional).
        val_split: The same for the evaluation split.
        img_suffix: Image file name ending(s), e.g. ".jpg" or "_leftImg8bit.png".
        seg_map_suffix: Label file name ending, e.g. ".png" or "_gtFine_labelTrainIds.png".
        recursive: Search the split folders recursively (Cityscapes keeps one subfolder per city).
        class_names: Class names in index order; None reads them from ``classes_file``.
        palette: One RGB colour per class (drawings); None: from ``classes_file`` if it gives them.
        classes_file: ``classes.txt`` under ``root`` (one name a line, optional ``#rrggbb``), used when
            ``class_names`` is None.
        batch_size: Training batch size.
        val_batch_size: Evaluation batch size (images keep their own sizes; batches are lists).
        num_workers: DataLoader workers.
        crop_size: Training crop, int or (height, width).
        train_scale: Training rescale box (long, short).
        ratio_range: Random multiplier range of the training box.
        cat_max_ratio: Crop rejection threshold.
        test_scale: Evaluation rescale box (long, short).
        reduce_zero_label: Map label 0 to ignore and k to k-1 (ADE20K).
        ignore_index: Ignore label.
        label_ids: Value written for each class by ``eval.save_predictions`` (e.g. Cityscapes trainId ->
            labelId); None writes the dataset's own label value (class index, +1 under ``reduce_zero_label``).
        mean: Normalisation mean in 0..1 units; None gives ImageNet's until ``set_normalization``
            provides the backbone's.
        std: Normalisation std in 0..1 units; None as for ``mean``.
        pin_memory: DataLoader ``pin_memory``.
        skip_bad_samples: Skip bad files (a corrupt or truncated image or label, a label of another
            size than its image, labels outside the classes) instead of raising: a training sample is
            replaced by the next good one, an evaluation image is left out of the scores; both are
            reported in metrics.json (see ``vitadapter.data.bad_samples``).
        dataset_name: Name of the dataset in error messages.
        layout_hint: Expected layout and how to get the data, appended to missing-folder errors.
    """

    def __init__(
        self,
        root: str,
        train_split: Mapping[str, Any],
        val_split: Mapping[str, Any],
        img_suffix: str | Sequence[str] = IMAGE_SUFFIXES,
        seg_map_suffix: str = ".png",
        recursive: bool = False,
        class_names: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        classes_file: str | None = None,
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 4,
        crop_size: int | Sequence[int] = 512,
        train_scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] | None = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        test_scale: Sequence[int] = (2048, 512),
        reduce_zero_label: bool = False,
        ignore_index: int = 255,
        label_ids: Sequence[int] | None = None,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        pin_memory: bool = False,
        skip_bad_samples: bool = False,
        dataset_name: str = "dataset",
        layout_hint: str = "",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = Path(str(root))
        self.train_split, self.val_split = _split(train_split, "train_split"), _split(val_split, "val_split")
        self.img_suffix = plain(img_suffix)
        self.seg_map_suffix = str(seg_map_suffix)
        self.recursive = bool(recursive)
        self.classes_file = None if classes_file is None else self.root / classes_file
        self.dataset_name, self.layout_hint = str(dataset_name), str(layout_hint)
        file_palette = None
        self.classes_from_file = class_names is None
        if class_names is None:
            if self.classes_file is None:
                raise ValueError("give data.class_names (a list) or data.classes_file (a classes.txt under data.root)")
            self._check_root()
            class_names, file_palette = read_classes_file(self.classes_file)
        self.class_names: list[str] = [str(c) for c in class_names]
        palette = plain(palette) if palette is not None else file_palette
        if palette is not None and len(palette) != len(self.class_names):
            raise ValueError(f"data.palette has {len(palette)} colours for {len(self.class_names)} classes")
        self.palette: list[tuple[int, int, int]] | None = (
            None if palette is None else [(int(r), int(g), int(b)) for r, g, b in palette]
        )
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.num_workers = int(num_workers)
        self.crop_size = crop_hw(crop_size)
        self.train_scale: tuple[int, ...] = plain(train_scale)
        self.ratio_range: tuple[float, ...] | None = plain(ratio_range)
        self.cat_max_ratio = float(cat_max_ratio)
        self.test_scale: tuple[int, ...] = plain(test_scale)
        self.reduce_zero_label = bool(reduce_zero_label)
        self.ignore_index = int(ignore_index)
        self.label_ids: list[int] | None = None if label_ids is None else [int(v) for v in plain(label_ids)]
        if self.label_ids is not None and len(self.label_ids) != len(self.class_names):
            raise ValueError(f"data.label_ids has {len(self.label_ids)} values for {len(self.class_names)} classes")
        # None (the config default) means "the backbone's statistics", which the builder passes to
        # set_normalization; until then ImageNet's, which most timm ViTs use.
        self.mean: tuple[float, ...] = floats(IMAGENET_MEAN if mean is None else mean, "mean", 3)
        self.std: tuple[float, ...] = floats(IMAGENET_STD if std is None else std, "std", 3)
        self.pin_memory = bool(pin_memory)
        self.skip_bad_samples = bool(skip_bad_samples)
        self.train_set: SegmentationDataset | None = None
        self.val_set: SegmentationDataset | None = None

    def _check_root(self) -> None:
        if not self.root.is_dir():
            hint = f"\n{self.layout_hint}" if self.layout_hint else ""
            raise FileNotFoundError(f"{self.dataset_name} root not found: {self.root} (data.root){hint}")

    def check_data(self) -> None:
        """Raise if the dataset root or a split folder is missing (before anything else is built)."""
        self._check_root()
        for split in (self.train_split, self.val_split):
            for key in SPLIT_KEYS:
                if split[key] is not None and not self._path(split[key]).exists():
                    hint = f"\n{self.layout_hint}" if self.layout_hint else ""
                    raise FileNotFoundError(f"{self.dataset_name} {key} not found: {self._path(split[key])}{hint}")

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

    def _path(self, relative: str) -> Path:
        return self.root / str(relative)

    def _label_hint(self) -> str:
        if self.classes_from_file:
            return (f"Add the missing classes to {self.classes_file} (line k+1 = pixel value k), mark unlabelled "
                    f"pixels with {self.ignore_index} (data.ignore_index), or fix the file")
        return "Check num_classes and reduce_zero_label, or fix the file"

    def _dataset(self, training: bool, transform: Any) -> SegmentationDataset:
        split = self.train_split if training else self.val_split
        return SegmentationDataset(
            self._path(split["img_dir"]),
            self._path(split["ann_dir"]),
            img_suffix=self.img_suffix,
            seg_map_suffix=self.seg_map_suffix,
            split_file=None if split["split_file"] is None else self._path(split["split_file"]),
            recursive=self.recursive,
            transform=transform,
            reduce_zero_label=self.reduce_zero_label,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            transform_mask=training,
            on_bad_sample=skip_policy(self.skip_bad_samples, training=training),
            split_name="train" if training else "val",
            dataset_name=self.dataset_name,
            layout_hint=self.layout_hint,
            label_hint=self._label_hint(),
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
            self.train_set = self._dataset(True, train_tf)
        if self.val_set is None:
            val_tf = build_val_transform(scale=self.test_scale, mean=self.mean, std=self.std)
            self.val_set = self._dataset(False, val_tf)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, drop-last loader with default collation into B×3×H×W / B×H×W tensors."""
        if self.train_set is None:
            self.setup("fit")
        return train_loader(self.train_set, self.batch_size, self.num_workers, self.pin_memory,
                            source=str(self._path(self.train_split["img_dir"])), **training_shard(self))

    def val_dataloader(self) -> DataLoader:
        """Ordered loader whose batches are lists (images rescaled, masks at original size)."""
        if self.val_set is None:
            self.setup("validate")
        return eval_loader(self.val_set, self.val_batch_size, self.num_workers, self.pin_memory, collate_as_lists)

    def test_dataloader(self) -> DataLoader:
        """Same as ``val_dataloader``."""
        return self.val_dataloader()
