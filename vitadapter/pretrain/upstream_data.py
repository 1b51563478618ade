"""Loaders of the upstream pretraining set (`vitadapter.data.synthetic.upstream_writer`), written on first use."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vitadapter.data.loaders import plain
from vitadapter.data.synthetic.upstream_writer import UPSTREAM_SPLITS, is_upstream_set_complete, write_upstream_set


class UpstreamDataset(Dataset):
    """One split of the upstream set: normalised images and their 16-bit label maps.

    Args:
        root: the set's root.
        split: "training" or "validation".
        mean, std: per-channel normalisation in 0..1 pixel units (the backbone's).
        flip: flip each image (and its labels) left-right with probability 0.5.
    """

    def __init__(self, root: str | Path, split: str, mean: Sequence[float], std: Sequence[float],
                 flip: bool = False) -> None:
        folders = {folder: prefix for folder, prefix, _ in UPSTREAM_SPLITS}
        if split not in folders:
            raise ValueError(f"split={split!r}: choose from {sorted(folders)}")
        self.images = sorted((Path(root) / "images" / split).glob(f"{folders[split]}_*.jpg"))
        if not self.images:
            raise FileNotFoundError(f"no upstream images in {Path(root) / 'images' / split}; "
                                    "scripts/pretrain_backbone.py writes the set there when data.synthetic is set")
        self.labels = [Path(root) / "annotations" / split / f"{p.stem}.png" for p in self.images]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = cv2.imread(str(self.images[index]), cv2.IMREAD_COLOR)
        labels = cv2.imread(str(self.labels[index]), cv2.IMREAD_UNCHANGED)
        if image is None or labels is None or labels.dtype != np.uint16 or labels.shape != image.shape[:2]:
            raise ValueError(f"unreadable upstream sample {self.images[index]} / {self.labels[index]} (labels must "
                             "be a uint16 PNG of the image's size); delete the set's folder to have it rewritten")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.flip and torch.rand(()) < 0.5:
            image, labels = image[:, ::-1], labels[:, ::-1]
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        return {"image": (pixels - self.mean) / self.std,
                "labels": torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))}


class UpstreamDataModule(L.LightningDataModule):
    """Training and validation loaders of the upstream set; `prepare_data` writes the set once.

    Args:
        root: the set's root (e.g. data/synthetic_upstream).
        synthetic: keyword arguments of `write_upstream_set` (num_train, num_val, image_size, max_objects, seed).
        batch_size: training batch size.
        val_batch_size: validation batch size.
        num_workers: loader worker processes.
        mean, std: the backbone's normalisation (set by the pretraining run).
    """

    def __init__(self, root: str, synthetic: Mapping[str, Any], batch_size: int = 32, val_batch_size: int = 32,
                 num_workers: int = 0, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5)) -> None:
        super().__init__()
        self.root = Path(root)
        self.synthetic = plain(synthetic)
        allowed = set(inspect.signature(write_upstream_set).parameters) - {"root"}
        if set(self.synthetic) - allowed:
            raise ValueError(f"unknown data.synthetic key(s) {sorted(set(self.synthetic) - allowed)}; allowed: "
                             f"{sorted(allowed)}")
        self.batch_size, self.val_batch_size, self.num_workers = batch_size, val_batch_size, num_workers
        self.mean, self.std = tuple(mean), tuple(std)

    def prepare_data(self) -> None:
        if not is_upstream_set_complete(self.root, **self.synthetic):
            write_upstream_set(self.root, **self.synthetic)

    def train_dataloader(self) -> DataLoader:
        dataset = UpstreamDataset(self.root, "training", self.mean, self.std, flip=True)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        dataset = UpstreamDataset(self.root, "validation", self.mean, self.std)
        return DataLoader(dataset, batch_size=self.val_batch_size, num_workers=self.num_workers)
