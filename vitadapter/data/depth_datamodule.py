"""Lightning DataModule for monocular depth datasets laid out as image and depth-map folders.

NYU Depth v2 (mmseg's layout), your own data (``folder_depth``) and the synthetic demo set are
configurations of this module (``vitadapter/configs/data/``). Each split names its image and depth folders
(relative to ``root``) and optionally a split file; the module adds the depth recipe (see
``vitadapter.data.depth_transforms``), the loaders, and what the task and metrics need to know about the
depths: their range (``min_depth``, ``max_depth``), the scored region (``eval_crop``) and the file units
(``depth_scale``, ``invalid_value``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from vitadapter.data.bad_samples import skip_policy
from vitadapter.data.depth_dataset import DepthDataset
from vitadapter.data.depth_transforms import (
    DEFAULT_COLOUR_JITTER,
    build_depth_train_transform,
    build_depth_val_transform,
    crop_hw,
)
from vitadapter.data.loaders import eval_loader, floats, plain, train_loader, training_shard
from vitadapter.data.seg_dataset import IMAGE_SUFFIXES
from vitadapter.data.seg_transforms import IMAGENET_MEAN, IMAGENET_STD
from vitadapter.data.synthetic.depth_writer import is_synthetic_nyu_complete, write_synthetic_nyu

SPLIT_KEYS = ("img_dir", "depth_dir", "split_file")
# Eigen et al.'s NYU crop (the region with valid Kinect depth); None scores every valid pixel
EVAL_CROPS: tuple[str | None, ...] = ("eigen", None)


def collate_depth_as_lists(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Collate depth samples of different sizes into lists per key (used for evaluation).

    Args:
        samples: Dataset items.

    Returns:
        ``{"image": [3×h×w, ...], "depth": [H×W, ...], "name": [str, ...]}`` (empty lists for no samples: an
        evaluation batch whose images were all skipped as bad).
    """
    return {key: [s[key] for s in samples] for key in ("image", "depth", "name")}


def _split(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    spec = dict(plain(spec))
    unknown = sorted(set(spec) - set(SPLIT_KEYS))
    if unknown or "img_dir" not in spec or "depth_dir" not in spec:
        raise ValueError(f"data.{name} needs img_dir and depth_dir (and optionally split_file); got {sorted(spec)}")
    return {key: spec.get(key) for key in SPLIT_KEYS}


class DepthDataModule(L.LightningDataModule):
    """Train/val loaders of a depth dataset in image and depth-map folders.

    Args:
        root: Dataset root; split folders and files are relative to it (or absolute).
        train_split: ``{img_dir, depth_dir, split_file}`` of the training split (split_file optional).
        val_split: The same for the evaluation split.
        img_suffix: Image file name ending(s).
        depth_suffix: Depth file name ending; its extension picks the reader (.png 16-bit, .npy, .tif/.tiff float).
        recursive: Search the split folders recursively.
        depth_scale: File units per metre of 16-bit PNG depth maps (NYU: 1000, millimetres).
        invalid_value: Raw depth value meaning "no depth" (NYU: 0); None: only NaN/inf.
        min_depth: Smallest depth in metres that is scored and predicted.
        max_depth: Largest depth in metres that is scored and predicted.
        eval_crop: "eigen" scores only Eigen's NYU crop; None every valid pixel.
        batch_size: Training batch size.
        val_batch_size: Evaluation batch size (images keep their own sizes; batches are lists).
        num_workers: DataLoader workers.
        crop_size: Training crop, int or (height, width); smaller images are padded with invalid depth.
        flip: Random horizontal flip in training.
        colour_jitter: Keyword arguments of ``colour_augmentation`` (p, gamma, brightness, colour); None: off.
            Left out (the default): the Depth-Estimation-Toolbox's NYU values.
        train_scale: Optional fixed (long, short) box every training image is rescaled into (depth with nearest
            neighbour); None keeps the original size. Never random: a rescaled image looks nearer or farther.
        test_scale: Evaluation (long, short) box for the image; None keeps the original size. The depth is
            never resized for evaluation.
        mean: Normalisation mean in 0..1 units; None gives ImageNet's until ``set_normalization``
            provides the backbone's.
        std: Normalisation std in 0..1 units; None as for ``mean``.
        pin_memory: DataLoader ``pin_memory``.
        skip_bad_samples: Skip bad files (an undecodable image or depth map, a depth map of another size than
            its image or of the wrong type) instead of raising: a training sample is replaced by the next good
            one, an evaluation image is left out of the scores; both are reported in metrics.json.
        dataset_name: Name of the dataset in error messages.
        layout_hint: Expected layout and how to get the data, appended to missing-folder errors.
        synthetic: Keyword arguments of ``write_synthetic_nyu`` (num_train, num_val, height, width, max_objects,
            seed); when set, ``prepare_data`` writes that set into ``root`` once.
    """

    def __init__(
        self,
        root: str,
        train_split: Mapping[str, Any],
        val_split: Mapping[str, Any],
        img_suffix: str | Sequence[str] = IMAGE_SUFFIXES,
        depth_suffix: str = ".png",
        recursive: bool = False,
        depth_scale: float = 1000.0,
        invalid_value: float | None = 0,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        eval_crop: str | None = "eigen",
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 4,
        crop_size: int | Sequence[int] = (416, 544),
        flip: bool = True,
        colour_jitter: Mapping[str, Any] | None = DEFAULT_COLOUR_JITTER,
        train_scale: Sequence[int] | None = None,
        test_scale: Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pin_memory: bool = False,
        skip_bad_samples: bool = False,
        dataset_name: str = "dataset",
        layout_hint: str = "",
        synthetic: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = Path(str(root))
        self.train_split, self.val_split = _split(train_split, "train_split"), _split(val_split, "val_split")
        self.img_suffix = plain(img_suffix)
        self.depth_suffix = str(depth_suffix)
        self.recursive = bool(recursive)
        if depth_scale <= 0:
            raise ValueError(f"data.depth_scale must be > 0 (file units per metre), got {depth_scale}")
        self.depth_scale = float(depth_scale)
        self.invalid_value = None if invalid_value is None else float(invalid_value)
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < data.min_depth < data.max_depth, got {min_depth} and {max_depth}")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        if eval_crop not in EVAL_CROPS:
            raise ValueError(f"data.eval_crop must be one of {EVAL_CROPS}, got {eval_crop!r}")
        self.eval_crop = eval_crop
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.num_workers = int(num_workers)
        self.crop_size = crop_hw(plain(crop_size))
        self.flip = bool(flip)
        self.colour_jitter: dict[str, Any] | None = None if colour_jitter is None else dict(plain(colour_jitter))
        self.train_scale: tuple[int, ...] | None = None if train_scale is None else plain(train_scale)
        self.test_scale: tuple[int, ...] | None = None if test_scale is None else plain(test_scale)
        # None (the config default) means "the backbone's statistics", which the builder passes to
        # set_normalization; until then ImageNet's, which most timm ViTs use.
        self.mean: tuple[float, ...] = floats(IMAGENET_MEAN if mean is None else mean, "mean", 3)
        self.std: tuple[float, ...] = floats(IMAGENET_STD if std is None else std, "std", 3)
        self.pin_memory = bool(pin_memory)
        self.skip_bad_samples = bool(skip_bad_samples)
        self.dataset_name, self.layout_hint = str(dataset_name), str(layout_hint)
        self.synthetic: dict[str, Any] | None = plain(synthetic) if synthetic is not None else None
        if self.synthetic is not None:
            allowed = set(inspect.signature(write_synthetic_nyu).parameters) - {"root"}
            unknown = sorted(set(self.synthetic) - allowed)
            if unknown:
                raise ValueError(f"unknown data.synthetic key(s) {unknown}; allowed: {sorted(allowed)}")
        self.train_set: DepthDataset | None = None
        self.val_set: DepthDataset | None = None

    def _hint(self) -> str:
        return f"\n{self.layout_hint}" if self.layout_hint else ""

    def _path(self, relative: str) -> Path:
        return self.root / str(relative)

    def check_data(self) -> None:
        """Raise if the dataset root or a split folder is missing, unless ``prepare_data`` will write the synthetic set."""
        if self.synthetic is not None:
            return
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.dataset_name} root not found: {self.root} (data.root){self._hint()}")
        for split in (self.train_split, self.val_split):
            for key in SPLIT_KEYS:
                if split[key] is not None and not self._path(split[key]).exists():
                    raise FileNotFoundError(f"{self.dataset_name} {key} not found: {self._path(split[key])}"
                                            f"{self._hint()}")

    def prepare_data(self) -> None:
        """Write the synthetic set into ``root`` if requested and not already there with the same parameters."""
        if self.synthetic is not None and not is_synthetic_nyu_complete(self.root, **self.synthetic):
            write_synthetic_nyu(self.root, **self.synthetic)

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use the backbone's normalisation; call before ``setup``.

        Args:
            mean: Per-channel mean in 0..1 units.
            std: Per-channel std in 0..1 units.
        """
        self.mean, self.std = floats(mean, "mean", 3), floats(std, "std", 3)
        self.train_set = self.val_set = None  # rebuilt with the new statistics on the next setup

    def _dataset(self, training: bool, transform: Any) -> DepthDataset:
        split = self.train_split if training else self.val_split
        return DepthDataset(
            self._path(split["img_dir"]),
            self._path(split["depth_dir"]),
            img_suffix=self.img_suffix,
            depth_suffix=self.depth_suffix,
            split_file=None if split["split_file"] is None else self._path(split["split_file"]),
            recursive=self.recursive,
            depth_scale=self.depth_scale,
            invalid_value=self.invalid_value,
            transform=transform,
            transform_depth=training,
            on_bad_sample=skip_policy(self.skip_bad_samples, training=training),
            split_name="train" if training else "val",
            dataset_name=self.dataset_name,
            layout_hint=self.layout_hint,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets: train and val for "fit" (or None), val for "validate", "test" and "predict".

        Args:
            stage: Lightning stage name.
        """
        if stage in (None, "fit") and self.train_set is None:
            train_tf = build_depth_train_transform(
                self.crop_size,
                flip=self.flip,
                colour_jitter=self.colour_jitter,
                train_scale=self.train_scale,
                mean=self.mean,
                std=self.std,
                seed=torch.initial_seed(),  # training samples reseed it (see resumable_loading)
            )
            self.train_set = self._dataset(True, train_tf)
        if self.val_set is None:
            val_tf = build_depth_val_transform(test_scale=self.test_scale, mean=self.mean, std=self.std)
            self.val_set = self._dataset(False, val_tf)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, drop-last loader with default collation into B×3×H×W images and B×H×W depths."""
        if self.train_set is None:
            self.setup("fit")
        return train_loader(self.train_set, self.batch_size, self.num_workers, self.pin_memory,
                            source=str(self._path(self.train_split["img_dir"])), **training_shard(self))

    def val_dataloader(self) -> DataLoader:
        """Ordered loader whose batches are lists (images optionally rescaled, depths at original size)."""
        if self.val_set is None:
            self.setup("validate")
        return eval_loader(self.val_set, self.val_batch_size, self.num_workers, self.pin_memory,
                           collate_depth_as_lists)

    def test_dataloader(self) -> DataLoader:
        """Same as ``val_dataloader``."""
        return self.val_dataloader()
