"""A monocular depth dataset: images and depth maps in two folders, paired by file name.

As ``SegmentationDataset``, files pair up by their path relative to the folder with the suffix removed
(``<img_dir>/<key><img_suffix>`` with ``<depth_dir>/<key><depth_suffix>``), optionally restricted to the
keys of a split file. Depth maps are read by their extension:

- ``.png``: a 16-bit single-channel PNG; metres = value / ``depth_scale`` (NYU Depth v2 in mmseg's layout:
  millimetres, ``depth_scale`` 1000);
- ``.npy``: a float array of metres;
- ``.tif`` / ``.tiff``: a float single-channel TIFF of metres.

Pixels holding ``invalid_value`` (in the file's own units) or a non-finite value have no depth and become
0.0, which means "invalid" everywhere downstream (transforms pad with it, losses and metrics skip it).
A bad file (undecodable, of another size than its image, of the wrong type or with negative depths)
raises ``BadSampleError`` naming it, or is skipped under a skipping policy (see
``vitadapter.data.bad_samples``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vitadapter.data.bad_samples import bad_sample, check_policy, open_image, read_or_skip, read_rgb
from vitadapter.data.resumable_loading import SampleKey, keyed_index
from vitadapter.data.paired_files import IMAGE_SUFFIXES, PairedFiles, image_tensor, suffix_tuple

DEPTH_SUFFIXES: tuple[str, ...] = (".png", ".npy", ".tif", ".tiff")
_REWRITE = "Rewrite it as a 16-bit PNG (value / data.depth_scale = metres) or a float .npy/.tiff in metres"


def _read_png(path: Path, depth_scale: float) -> tuple[np.ndarray, np.ndarray]:
    img = open_image(path, "depth map")
    if img.mode not in ("I;16", "I"):
        kind = "an 8-bit PNG" if img.mode in ("1", "L", "P", "LA", "PA") else "a colour PNG"
        raise bad_sample(path, f"the depth map is {kind} (PIL mode {img.mode!r}); expected a 16-bit single-channel "
                               "PNG (uint16, value / depth_scale = metres)", _REWRITE)
    raw = np.array(img)
    if raw.dtype.kind == "i" and (raw.min(initial=0) < 0 or raw.max(initial=0) > np.iinfo(np.uint16).max):
        raise bad_sample(path, "the depth PNG holds values outside 0..65535", _REWRITE)
    return raw, (raw.astype(np.float64) / depth_scale).astype(np.float32)


def _check_exists(path: Path) -> None:
    if not path.is_file():  # listed when the dataset was built: the folder changed, not the data
        raise FileNotFoundError(f"depth map {path} disappeared after the dataset was listed; was the folder moved or "
                                "rewritten?")


def _read_npy(path: Path) -> np.ndarray:
    _check_exists(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise bad_sample(path, f"cannot decode the depth map: {err}",
                         "The file is corrupt, truncated or not a .npy array: re-create or remove it") from err


def _read_tiff(path: Path) -> np.ndarray:
    _check_exists(path)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # PIL cannot read float64 or some compressed float TIFFs
    if raw is None:
        raise bad_sample(path, "cannot decode the depth map: not a TIFF OpenCV can read",
                         "The file is corrupt, truncated or not a TIFF: re-create or remove it")
    return raw


def read_depth(path: Path, depth_scale: float = 1000.0, invalid_value: float | None = 0) -> np.ndarray:
    """Read one depth file as an H×W float32 map of metres in which 0.0 marks pixels without depth.

    Args:
        path: A ``.png`` (16-bit, value / ``depth_scale`` = metres), ``.npy`` or ``.tif``/``.tiff`` (float metres).
        depth_scale: File units per metre of 16-bit PNGs (1000: millimetres).
        invalid_value: Raw file value meaning "no depth" (compared before scaling); None: only non-finite values.

    Returns:
        The depth map; a bad file raises ``BadSampleError`` naming it.
    """
    suffix = path.suffix.lower()
    if suffix == ".png":
        raw, metres = _read_png(path, depth_scale)
    elif suffix in (".npy", ".tif", ".tiff"):
        raw = _read_npy(path) if suffix == ".npy" else _read_tiff(path)
        if raw.ndim == 3 and raw.shape[2] == 1:
            raw = raw[..., 0]
        if raw.ndim != 2 or raw.dtype.kind != "f":
            raise bad_sample(path, f"the depth map is a {raw.dtype} array of shape {raw.shape}, expected an H×W "
                                   f"float array of metres", _REWRITE)
        metres = raw.astype(np.float32)
    else:
        raise ValueError(f"cannot read depth maps of type {suffix!r} ({path}); use one of {DEPTH_SUFFIXES}")
    invalid = ~np.isfinite(metres)
    if invalid_value is not None:
        invalid |= raw == invalid_value
    metres[invalid] = 0.0
    if (metres < 0).any():
        raise bad_sample(path, f"negative depths (down to {float(metres.min()):g} m)",
                         "Depth maps hold metres >= 0: mark missing depth with data.invalid_value, or fix the file")
    return metres


class DepthDataset(Dataset):
    """Images and metric depth maps of one split, paired by file name.

    Args:
        img_dir: Image folder.
        depth_dir: Depth map folder.
        img_suffix: Image name ending(s), e.g. ".jpg" or (".jpg", ".png").
        depth_suffix: Depth map name ending, e.g. ".png", "_depth.npy" or ".tiff" (its extension picks the reader).
        split_file: Optional text file listing the keys to read, one a line (others are ignored).
        recursive: Search the folders recursively.
        depth_scale: File units per metre of 16-bit PNG depth maps (1000: millimetres).
        invalid_value: Raw file value meaning "no depth" (0 for NYU's PNGs); None: only NaN/inf.
        transform: Albumentations Compose called as ``transform(image=..., mask=depth)`` (or with the image
            only, see ``transform_depth``); None returns the decoded numpy arrays.
        transform_depth: Whether the transform also sees the depth (training); False for evaluation, where
            the image may be rescaled but the depth stays at its original size.
        on_bad_sample: "raise" a ``BadSampleError`` for a bad file; "replace" the sample by the next good one
            (training); "drop" it (evaluation). See ``vitadapter.data.bad_samples``.
        split_name: The split's name in messages (e.g. "train").
        dataset_name: The dataset's name in messages (e.g. "NYU Depth v2").
        layout_hint: Text appended to "folder not found" and "split is empty" errors.
    """

    def __init__(
        self,
        img_dir: str | Path,
        depth_dir: str | Path,
        img_suffix: str | Sequence[str] = IMAGE_SUFFIXES,
        depth_suffix: str = ".png",
        split_file: str | Path | None = None,
        recursive: bool = False,
        depth_scale: float = 1000.0,
        invalid_value: float | None = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
        transform_depth: bool = True,
        on_bad_sample: str = "raise",
        split_name: str = "",
        dataset_name: str = "dataset",
        layout_hint: str = "",
    ) -> None:
        if not str(depth_suffix).lower().endswith(DEPTH_SUFFIXES):
            raise ValueError(f"depth_suffix {depth_suffix!r} must end in one of {DEPTH_SUFFIXES}")
        if depth_scale <= 0:
            raise ValueError(f"depth_scale must be > 0, got {depth_scale}")
        self.img_dir, self.depth_dir = Path(img_dir), Path(depth_dir)
        self.img_suffix, self.depth_suffix = suffix_tuple(img_suffix), str(depth_suffix)
        self.split_file = None if split_file is None else Path(split_file)
        self.recursive = bool(recursive)
        self.depth_scale = float(depth_scale)
        self.invalid_value = invalid_value
        self.transform = transform
        self.transform_depth = transform_depth
        self.on_bad_sample = check_policy(on_bad_sample)
        self.split_name, self.dataset_name, self.layout_hint = split_name, dataset_name, layout_hint
        self.keys, self.image_paths, self.depth_paths = PairedFiles(
            self.img_dir, self.depth_dir, self.img_suffix, self.depth_suffix, "depth map", self.split_file,
            self.recursive, split_name, dataset_name, layout_hint).index()

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def names(self) -> list[str]:
        """Pairing keys (file stems, with the subfolder for recursive datasets), in index order."""
        return list(self.keys)

    def load_image(self, index: int) -> np.ndarray:
        """Decode image ``index`` as H×W×3 uint8 RGB (grayscale, palette and RGBA are converted)."""
        return read_rgb(self.image_paths[index])

    def load_depth(self, index: int) -> np.ndarray:
        """Decode depth map ``index`` as H×W float32 metres, 0.0 where there is no depth."""
        return read_depth(self.depth_paths[index], self.depth_scale, self.invalid_value)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        """Return ``{"image", "depth", "name"}`` for an item index (or a training sampler's (index, seed) key).

        Without a transform, image and depth are the decoded numpy arrays; with one, they are tensors
        (image float 3×H×W, depth float32 H×W metres, 0 = invalid). Under a skipping policy, ``"skipped"``
        lists the bad files passed over, and a dropped item holds nothing else.
        """
        index = keyed_index(key, self.transform)
        return read_or_skip(self._read, index, len(self), self.on_bad_sample, lambda: keyed_index(key, self.transform))

    def _read(self, index: int) -> dict[str, Any]:
        image = self.load_image(index)
        depth = self.load_depth(index)
        if image.shape[:2] != depth.shape:
            raise bad_sample(
                self.depth_paths[index],
                f"size mismatch: the depth map is {depth.shape[1]}x{depth.shape[0]} (WxH) but its image "
                f"{self.image_paths[index]} is {image.shape[1]}x{image.shape[0]}",
                "Fix or remove the pair",
            )
        name = self.keys[index]
        if self.transform is None:
            return {"image": image, "depth": depth, "name": name}
        if self.transform_depth:
            out = self.transform(image=image, mask=depth)
            image, depth = out["image"], out["mask"]
        else:
            image = self.transform(image=image)["image"]
        return {"image": image_tensor(image), "depth": torch.as_tensor(np.ascontiguousarray(depth), dtype=torch.float32),
                "name": name}
