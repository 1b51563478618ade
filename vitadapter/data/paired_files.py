"""Images paired with a per-pixel target file (a label or a depth map) by file name, in two folders or a split file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
_MAX_LISTED = 5

Pairs = tuple[list[str], list[Path], list[Path]]
"""(keys, image paths, target paths), in key order."""


def few(names: Sequence[str]) -> str:
    """The first few of ``names``, comma-separated, with a count of the rest."""
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def suffix_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    """One file name ending or several, as a tuple."""
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def _key(path: Path, folder: Path, suffixes: tuple[str, ...]) -> str | None:
    """The pairing key of ``path`` (relative path, suffix removed), or None if no suffix matches."""
    relative = path.relative_to(folder).as_posix()
    for suffix in suffixes:
        if relative.lower().endswith(suffix.lower()) and len(relative) > len(suffix):
            return relative[: -len(suffix)]
    return None


def list_by_key(folder: Path, suffixes: tuple[str, ...], recursive: bool = False) -> dict[str, Path]:
    """Files of ``folder`` (and its subfolders if ``recursive``) ending in one of ``suffixes``, by key.

    Args:
        folder: Folder to list.
        suffixes: Accepted file name endings (case-insensitive), e.g. (".jpg", ".png") or "_leftImg8bit.png".
        recursive: Also list subfolders (keys then hold the relative folder, e.g. "aachen/aachen_000000_000019").

    Returns:
        Key -> path, sorted by key; two files with one key raise ``ValueError``.
    """
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    by_key: dict[str, Path] = {}
    for path in sorted(p for p in candidates if not p.name.startswith(".") and p.is_file()):
        key = _key(path, folder, suffixes)
        if key is None:
            continue
        if key in by_key:
            raise ValueError(
                f"{folder} holds two files with the stem {key!r} ({by_key[key].name}, {path.name}); keep one of them."
            )
        by_key[key] = path
    return dict(sorted(by_key.items()))


class PairedFiles:
    """Where one split's images and their targets are, and the messages that name what is missing.

    Args:
        img_dir: Image folder.
        target_dir: Folder of the targets (labels, depth maps).
        img_suffix: Image name endings.
        target_suffix: Target name ending.
        target_name: What a target is called in messages ("label", "depth map").
        split_file: Optional text file listing the keys to read, one a line (others are ignored).
        recursive: Search the folders recursively.
        split_name: The split's name in messages (e.g. "train").
        dataset_name: The dataset's name in messages.
        layout_hint: Text appended to "folder not found" and "split is empty" errors.
    """

    def __init__(self, img_dir: Path, target_dir: Path, img_suffix: tuple[str, ...], target_suffix: str,
                 target_name: str, split_file: Path | None, recursive: bool, split_name: str, dataset_name: str,
                 layout_hint: str) -> None:
        self.img_dir, self.target_dir = img_dir, target_dir
        self.img_suffix, self.target_suffix, self.target_name = img_suffix, target_suffix, target_name
        self.split_file, self.recursive = split_file, recursive
        self.split_name, self.dataset_name, self.layout_hint = split_name, dataset_name, layout_hint

    def hint(self) -> str:
        """The layout hint on a line of its own, or nothing."""
        return f"\n{self.layout_hint}" if self.layout_hint else ""

    def index(self) -> Pairs:
        """The split's pairs: every image with its target (or the keys the split file lists).

        Raises:
            FileNotFoundError: a folder, the split file or a listed file is missing, or the split is empty.
            ValueError: an image without a target or a target without an image (folder pairing).
        """
        for folder in (self.img_dir, self.target_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"{self.dataset_name} folder not found: {folder}{self.hint()}")
        if self.split_file is not None:
            return self._index_split_file()
        images = list_by_key(self.img_dir, self.img_suffix, self.recursive)
        targets = list_by_key(self.target_dir, (self.target_suffix,), self.recursive)
        if not images:
            raise FileNotFoundError(
                f"no images ({'/'.join(self.img_suffix)}) in {self.img_dir}: the {self.split_name} split is empty."
                f"{self.hint()}"
            )
        no_target = sorted(images.keys() - targets.keys())
        no_image = sorted(targets.keys() - images.keys())
        if no_target or no_image:
            name = self.target_name
            parts = []
            if no_target:
                orphans = few([images[k].name for k in no_target])
                parts.append(f"{len(no_target)} image(s) without a {name} in {self.target_dir}: {orphans}")
            if no_image:
                orphans = few([targets[k].name for k in no_image])
                parts.append(f"{len(no_image)} {name}(s) without an image in {self.img_dir}: {orphans}")
            raise ValueError(
                f"images and {name}s must pair up by file name (image <name>{'|'.join(self.img_suffix)}, {name} "
                f"<name>{self.target_suffix}); " + "; ".join(parts) + ". Remove the orphans or restore the missing files."
            )
        keys = sorted(images)
        return keys, [images[k] for k in keys], [targets[k] for k in keys]

    def _index_split_file(self) -> Pairs:
        assert self.split_file is not None
        if not self.split_file.is_file():
            raise FileNotFoundError(f"split file not found: {self.split_file}{self.hint()}")
        keys = [line.strip() for line in self.split_file.read_text().splitlines() if line.strip()]
        if not keys:
            raise FileNotFoundError(f"the split file {self.split_file} lists no images: the {self.split_name} split "
                                    f"is empty.{self.hint()}")
        images: list[Path] = []
        missing: list[str] = []
        for key in keys:
            found = [self.img_dir / f"{key}{s}" for s in self.img_suffix if (self.img_dir / f"{key}{s}").is_file()]
            images.append(found[0] if found else self.img_dir / f"{key}{self.img_suffix[0]}")
            missing += [] if found else [str(images[-1])]
        targets = [self.target_dir / f"{key}{self.target_suffix}" for key in keys]
        missing += [str(p) for p in targets if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} file(s) listed in {self.split_file} do not exist: {few(missing)}. "
                "Restore them or remove their lines from the split file."
            )
        return keys, images, targets


def image_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An augmented H×W×3 image (or a pipeline's 3×H×W tensor) as a float 3×H×W tensor."""
    if isinstance(image, torch.Tensor):  # a pipeline that already ends in ToTensorV2
        return image.float()
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
