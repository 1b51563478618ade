"""A semantic segmentation dataset that every segmentation dataset is a configuration of.

Images and label maps live in two folders (searched recursively when asked) and pair up by their path
relative to the folder with the suffixes removed, as in mmsegmentation's ``BaseSegDataset``::

    <img_dir>/<key><img_suffix>          e.g. leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png
    <ann_dir>/<key><seg_map_suffix>      e.g. gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png

With a split file (one key a line, as Pascal VOC's ``ImageSets/Segmentation/train.txt``) only the listed
keys are read, and other files in the folders are ignored.

Unlike mmsegmentation and detectron2, which silently drop or miscount out-of-range labels, every
label map is checked against ``num_classes`` when it is read. A bad file (corrupt or truncated, a label
of another size than its image or with values outside the classes) raises ``BadSampleError`` naming it,
or is skipped under a skipping policy (see ``vitadapter.data.bad_samples``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vitadapter.data.bad_samples import bad_sample, check_policy, open_image, read_or_skip, read_rgb
from vitadapter.data.paired_files import IMAGE_SUFFIXES, PairedFiles, few, image_tensor, suffix_tuple
from vitadapter.data.resumable_loading import SampleKey, keyed_index



def reduce_zero_label(mask: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Map raw labels to training ids: 0 ("other") -> ignore, k -> k-1, ignore stays ignore (ADE20K).

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
        A new label map of the same dtype in the raw (ADE20K) convention.
    """
    out = mask.copy()
    out += 1
    out[mask == ignore_index] = 0
    return out


class SegmentationDataset(Dataset):
    """Images and class-index label maps of one split, paired by file name.

    Args:
        img_dir: Image folder.
        ann_dir: Label folder (PNG, one class index per pixel).
        img_suffix: Image name ending(s), e.g. ".jpg" or (".jpg", ".png") or "_leftImg8bit.png".
        seg_map_suffix: Label name ending, e.g. ".png" or "_gtFine_labelTrainIds.png".
        split_file: Optional text file listing the keys to read, one a line (others are ignored).
        recursive: Search the folders recursively (Cityscapes keeps one subfolder per city).
        transform: Albumentations Compose called as ``transform(image=..., mask=...)`` (or with the
            image only, see ``transform_mask``); None returns the decoded numpy arrays.
        reduce_zero_label: Map 0 -> ignore and k -> k-1 (the ADE20K convention).
        num_classes: Number of classes; labels outside [0, num_classes) other than ignore raise.
        ignore_index: Label value meaning "ignore".
        transform_mask: Whether the transform also sees the mask (training); False for evaluation, where
            the image is rescaled but the mask stays at its original size.
        on_bad_sample: What a bad file does (see ``vitadapter.data.bad_samples``): "raise" a
            ``BadSampleError``; "replace" the sample by the next good one (training); "drop" it (evaluation).
        split_name: The split's name in messages (e.g. "train").
        dataset_name: The dataset's name in messages (e.g. "ADE20K").
        layout_hint: Text appended to "folder not found" and "split is empty" errors (the expected layout and
            how to get the data).
        label_hint: What to do about a label value outside the classes (ends the error message).
    """

    def __init__(
        self,
        img_dir: str | Path,
        ann_dir: str | Path,
        img_suffix: str | Sequence[str] = IMAGE_SUFFIXES,
        seg_map_suffix: str = ".png",
        split_file: str | Path | None = None,
        recursive: bool = False,
        transform: Callable[..., dict[str, Any]] | None = None,
        reduce_zero_label: bool = False,
        num_classes: int = 150,
        ignore_index: int = 255,
        transform_mask: bool = True,
        on_bad_sample: str = "raise",
        split_name: str = "",
        dataset_name: str = "dataset",
        layout_hint: str = "",
        label_hint: str = "Check num_classes and reduce_zero_label, or fix the file",
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id (num_classes={num_classes})")
        self.img_dir, self.ann_dir = Path(img_dir), Path(ann_dir)
        self.img_suffix, self.seg_map_suffix = suffix_tuple(img_suffix), str(seg_map_suffix)
        self.split_file = None if split_file is None else Path(split_file)
        self.recursive = bool(recursive)
        self.transform = transform
        self.reduce_zero_label = reduce_zero_label
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform_mask = transform_mask
        self.on_bad_sample = check_policy(on_bad_sample)
        self.split_name = split_name
        self.dataset_name = dataset_name
        self.layout_hint = layout_hint
        self.label_hint = label_hint
        self.keys, self.image_paths, self.label_paths = PairedFiles(
            self.img_dir, self.ann_dir, self.img_suffix, self.seg_map_suffix, "label", self.split_file, self.recursive,
            split_name, dataset_name, layout_hint).index()

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def names(self) -> list[str]:
        """Pairing keys (file stems, with the subfolder for recursive datasets), in index order."""
        return list(self.keys)

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
                f"label values {few([str(v) for v in values.tolist()])} outside [0, {self.num_classes})"
                f" (after reduce_zero_label={self.reduce_zero_label}; ignore_index={self.ignore_index})",
                self.label_hint,
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
        name = self.keys[index]
        if self.transform is None:
            return {"image": image, "mask": mask, "name": name}
        if self.transform_mask:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        else:
            image = self.transform(image=image)["image"]
        return {"image": image_tensor(image), "mask": _mask_tensor(mask), "name": name}


def _mask_tensor(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        return mask.long()
    return torch.from_numpy(mask.astype(np.int64))
