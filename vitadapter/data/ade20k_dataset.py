"""ADE20K (ADEChallengeData2016 / SceneParse150) semantic segmentation dataset.

Reads the official layout (also written by ``vitadapter.data.synthetic.write_synthetic_ade20k``)::

    root/images/{training,validation}/*.jpg
    root/annotations/{training,validation}/*.png    (same stem, uint8 labels 0..150, 0 = "other")

Unlike mmsegmentation and detectron2, which silently drop or miscount out-of-range labels, every
label map is checked against ``num_classes`` when it is read. A bad file (corrupt or truncated, a label
of another size than its image or with values outside the classes) raises ``BadSampleError`` naming it,
or is skipped under a skipping policy (see ``vitadapter.data.bad_samples``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vitadapter.data.bad_samples import bad_sample, check_policy, open_image, read_or_skip, read_rgb
from vitadapter.data.resumable_loading import SampleKey, keyed_index

SPLITS: tuple[str, ...] = ("training", "validation")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
LABEL_SUFFIX = ".png"
EXPECTED_LAYOUT = """\
  <root>/                      e.g. data/ADEChallengeData2016
    images/training/*.jpg
    images/validation/*.jpg
    annotations/training/*.png     (same file stem as the image)
    annotations/validation/*.png"""
_HOW_TO_GET = (
    "Download it with `bash scripts/download_ade20k.sh data/` or point the config at an existing copy "
    "with `data.root=/path/to/ADEChallengeData2016`."
)
_MAX_LISTED = 5


def reduce_zero_label(mask: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Map ADE20K raw labels to training ids: 0 ("other") -> ignore, k -> k-1, ignore stays ignore.

    Args:
        mask: Integer label map.
        ignore_index: Label value meaning "ignore".

    Returns:
        A new label map of the same dtype.
    """
    out = mask.copy()
    out -= 1  # unsigned 0 wraps around, but those pixels are overwritten below
    out[(mask == 0) | (mask == ignore_index)] = ignore_index
    return out


def restore_zero_label(mask: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Inverse of ``reduce_zero_label``: k -> k+1, ignore -> 0.

    Args:
        mask: Integer label map of training ids.
        ignore_index: Label value meaning "ignore".

    Returns:
        A new label map of the same dtype in the raw ADE20K convention.
    """
    out = mask.copy()
    out += 1
    out[mask == ignore_index] = 0
    return out


def _listing(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise ValueError(
                f"{folder} holds two files with the stem {path.stem!r} ({by_stem[path.stem].name}, {path.name}); "
                "keep one of them."
            )
        by_stem[path.stem] = path
    return by_stem


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


class ADE20KDataset(Dataset):
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
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id (num_classes={num_classes})")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.reduce_zero_label = reduce_zero_label
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform_mask = (split == "training") if transform_mask is None else transform_mask
        self.on_bad_sample = check_policy(on_bad_sample)
        self.image_paths, self.label_paths = self._index()

    def _index(self) -> tuple[list[Path], list[Path]]:
        image_dir = self.root / "images" / self.split
        label_dir = self.root / "annotations" / self.split
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"ADE20K folder not found: {folder}\nExpected layout:\n{EXPECTED_LAYOUT}\n{_HOW_TO_GET}"
                )
        images = _listing(image_dir, IMAGE_SUFFIXES)
        labels = _listing(label_dir, (LABEL_SUFFIX,))
        if not images:
            raise FileNotFoundError(
                f"no images ({'/'.join(IMAGE_SUFFIXES)}) in {image_dir}: the {self.split} split is empty.\n"
                f"Expected layout:\n{EXPECTED_LAYOUT}\n{_HOW_TO_GET}"
            )
        no_label = sorted(images.keys() - labels.keys())
        no_image = sorted(labels.keys() - images.keys())
        if no_label or no_image:
            parts = []
            if no_label:
                orphans = _few([images[s].name for s in no_label])
                parts.append(f"{len(no_label)} image(s) without a label in {label_dir}: {orphans}")
            if no_image:
                orphans = _few([labels[s].name for s in no_image])
                parts.append(f"{len(no_image)} label(s) without an image in {image_dir}: {orphans}")
            raise ValueError(
                "images and labels must pair up by file stem; "
                + "; ".join(parts)
                + ". Remove the orphans or restore the missing files."
            )
        stems = sorted(images)
        return [images[s] for s in stems], [labels[s] for s in stems]

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def names(self) -> list[str]:
        """File stems, in index order."""
        return [p.stem for p in self.image_paths]

    def load_image(self, index: int) -> np.ndarray:
        """Decode image ``index`` as H×W×3 uint8 RGB (grayscale, palette and RGBA are converted)."""
        return read_rgb(self.image_paths[index])

    def load_label(self, index: int) -> np.ndarray:
        """Decode label ``index`` as an H×W integer map, after ``reduce_zero_label`` if enabled, and check it."""
        path = self.label_paths[index]
        img = open_image(path, "label")
        if img.mode not in ("L", "P", "I", "I;16"):
            raise bad_sample(path, f"the label has PIL mode {img.mode!r}, not a single-channel class-index PNG",
                             "Save it as a class-index PNG (mode L or P)")
        mask = np.array(img)
        if mask.dtype.kind == "i" and mask.min(initial=0) >= 0 and mask.max(initial=0) <= np.iinfo(np.uint16).max:
            mask = mask.astype(np.uint16)  # mode I: keep an unsigned type that cv2 can resize
        if self.reduce_zero_label:
            mask = reduce_zero_label(mask, self.ignore_index)
        bad = (mask != self.ignore_index) & ((mask < 0) | (mask >= self.num_classes))
        if bad.any():
            values = np.unique(mask[bad])
            raise bad_sample(
                path,
                f"label values {_few([str(v) for v in values.tolist()])} outside [0, {self.num_classes})"
                f" (after reduce_zero_label={self.reduce_zero_label}; ignore_index={self.ignore_index})",
                "Check num_classes and reduce_zero_label, or fix the file",
            )
        return mask

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        """Return ``{"image", "mask", "name"}`` for an item index (or a training sampler's (index, seed) key).

        Without a transform, image and mask are the decoded numpy arrays; with one, they are tensors
        (image float 3×H×W, mask int64 H×W). Under a skipping policy, ``"skipped"`` lists the bad files
        passed over, and a dropped item holds nothing else (see ``vitadapter.data.bad_samples``).
        """
        index = keyed_index(key, self.transform)
        return read_or_skip(self._read, index, len(self), self.on_bad_sample, lambda: keyed_index(key, self.transform))

    def _read(self, index: int) -> dict[str, Any]:
        image = self.load_image(index)
        mask = self.load_label(index)
        if image.shape[:2] != mask.shape[:2]:
            raise bad_sample(
                self.label_paths[index],
                f"size mismatch: the label is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                f"{self.image_paths[index]} is {image.shape[1]}x{image.shape[0]}",
                "Fix or remove the pair",
            )
        name = self.image_paths[index].stem
        if self.transform is None:
            return {"image": image, "mask": mask, "name": name}
        if self.transform_mask:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        else:
            image = self.transform(image=image)["image"]
        return {"image": _image_tensor(image), "mask": _mask_tensor(mask), "name": name}


def _image_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, torch.Tensor):  # a pipeline that already ends in ToTensorV2
        return image.float()
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


def _mask_tensor(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        return mask.long()
    return torch.from_numpy(mask.astype(np.int64))
