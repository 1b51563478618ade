"""Tests for ADE20KDataset and the zero-label helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitadapter.data.ade20k_dataset import ADE20KDataset, reduce_zero_label, restore_zero_label
from vitadapter.data.bad_samples import BadSampleError
from vitadapter.data.seg_transforms import build_train_transform, build_val_transform
from vitadapter.data.synthetic import write_synthetic_ade20k


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return write_synthetic_ade20k(tmp_path / "ade", num_train=4, num_val=2, image_size=64, seed=0)


def _label(root: Path, split: str = "training", stem: str = "ADE_train_00000001") -> Path:
    return root / "annotations" / split / f"{stem}.png"


def _image(root: Path, split: str = "training", stem: str = "ADE_train_00000001") -> Path:
    return root / "images" / split / f"{stem}.jpg"


def test_reduce_zero_label_round_trip() -> None:
    raw = np.array([[0, 1, 2], [150, 255, 7]], dtype=np.uint8)
    reduced = reduce_zero_label(raw)
    assert reduced.tolist() == [[255, 0, 1], [149, 255, 6]]
    assert reduced.dtype == np.uint8
    assert restore_zero_label(reduced).tolist() == [[0, 1, 2], [150, 0, 7]]
    valid = np.arange(0, 151, dtype=np.uint8)
    assert np.array_equal(restore_zero_label(reduce_zero_label(valid)), valid)
    assert raw[0, 0] == 0  # inputs are not modified


def test_reads_numpy_without_transform(root: Path) -> None:
    ds = ADE20KDataset(root, "training", num_classes=8)
    assert len(ds) == 4 and ds.names[0] == "ADE_train_00000001"
    item = ds[0]
    assert item["image"].shape == (64, 64, 3) and item["image"].dtype == np.uint8
    raw = np.asarray(Image.open(_label(root)))
    assert np.array_equal(item["mask"], reduce_zero_label(raw))
    assert item["name"] == "ADE_train_00000001"


def test_train_transform_gives_tensors(root: Path) -> None:
    tf = build_train_transform(32, scale=(64, 64), ratio_range=(0.5, 1.0), seed=0)
    item = ADE20KDataset(root, "training", transform=tf, num_classes=8)[1]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (32, 32) and item["mask"].dtype == torch.int64


def test_val_transform_keeps_mask_at_original_size(root: Path) -> None:
    item = ADE20KDataset(root, "validation", transform=build_val_transform(scale=(96, 96)), num_classes=8)[0]
    assert item["image"].shape == (3, 96, 96)
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.int64


def test_missing_folder_explains_layout_and_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        ADE20KDataset(tmp_path / "nowhere", "training")
    msg = str(err.value)
    assert "images/training" in msg and "annotations/validation" in msg
    assert "download_ade20k.sh" in msg and "data.root=" in msg


def test_bad_split_and_empty_split(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        ADE20KDataset(root, "train")
    for sub in ("images/validation", "annotations/validation"):
        (tmp_path / sub).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty"):
        ADE20KDataset(tmp_path, "validation")


def test_orphan_image_and_orphan_label(root: Path) -> None:
    _label(root, stem="ADE_train_00000002").unlink()
    with pytest.raises(ValueError, match="ADE_train_00000002.jpg"):
        ADE20KDataset(root, "training", num_classes=8)
    _image(root, "validation", "ADE_val_00000001").unlink()
    with pytest.raises(ValueError, match="ADE_val_00000001.png"):
        ADE20KDataset(root, "validation", num_classes=8)


def test_size_mismatch_names_both_files(root: Path) -> None:
    Image.fromarray(np.zeros((50, 64), np.uint8)).save(_label(root))
    ds = ADE20KDataset(root, "training", num_classes=8)
    with pytest.raises(ValueError, match="size mismatch") as err:
        ds[0]
    assert "ADE_train_00000001.jpg" in str(err.value) and "ADE_train_00000001.png" in str(err.value)
    assert "64x64" in str(err.value) and "64x50" in str(err.value)


def test_unreadable_image_names_the_file(root: Path) -> None:
    _image(root).write_bytes(b"not a jpeg")
    ds = ADE20KDataset(root, "training", num_classes=8)
    with pytest.raises(BadSampleError, match=r"ADE_train_00000001\.jpg: cannot decode the image: not an image"):
        ds[0]


def test_label_out_of_range_names_file_and_values(root: Path) -> None:
    label = np.zeros((64, 64), np.uint8)
    label[0, :3] = [1, 9, 12]  # 9 and 12 -> 8 and 11 after reduce_zero_label, >= num_classes=8
    Image.fromarray(label).save(_label(root))
    ds = ADE20KDataset(root, "training", num_classes=8)
    with pytest.raises(ValueError) as err:
        ds[0]
    msg = str(err.value)
    assert "ADE_train_00000001.png" in msg and "8, 11" in msg and "[0, 8)" in msg


def test_grayscale_and_rgba_become_rgb(root: Path) -> None:
    Image.fromarray(np.full((64, 64), 77, np.uint8)).save(_image(root))
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = 200
    Image.fromarray(rgba, "RGBA").save(_image(root, stem="ADE_train_00000002").with_suffix(".png"))
    _image(root, stem="ADE_train_00000002").unlink()
    ds = ADE20KDataset(root, "training", num_classes=8)
    gray = ds[0]["image"]
    assert gray.shape == (64, 64, 3) and np.all(np.abs(gray.astype(int) - 77) <= 1)
    assert ds[1]["image"].shape == (64, 64, 3)


def test_rgb_label_is_rejected(root: Path) -> None:
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(_label(root))
    with pytest.raises(ValueError, match="single-channel"):
        ADE20KDataset(root, "training", num_classes=8)[0]
