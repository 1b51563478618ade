"""DepthDataset: depth files read to exact metres, invalid pixels as 0, pairing, and bad files named, raised or skipped."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from vitadapter.data.bad_samples import SKIPPED, BadSampleError, CollateWithSkips
from vitadapter.data.depth_datamodule import collate_depth_as_lists
from vitadapter.data.depth_dataset import DepthDataset, read_depth
from vitadapter.data.depth_transforms import build_depth_train_transform

SEED = 1234  # a training key's augmentation seed


def _mm(h: int, w: int) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * 7 + 1).astype(np.uint16)


def write_pairs(root: Path, sizes: list[tuple[int, int]], suffix: str = ".png") -> Path:
    """images/NAME.png + depth/NAME<suffix> (millimetres 1.. in PNGs, the same metres in float maps)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    for index, (h, w) in enumerate(sizes):
        rgb = np.random.default_rng(index).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"im{index}.png")
        write_depth(root / "depth" / f"im{index}{suffix}", _mm(h, w))
    return root


def write_depth(path: Path, mm: np.ndarray) -> Path:
    if path.suffix == ".png":
        Image.fromarray(mm).save(path)
    elif path.suffix == ".npy":
        np.save(path, mm.astype(np.float32) / 1000)
    else:
        cv2.imwrite(str(path), mm.astype(np.float32) / 1000)
    return path


def dataset(root: Path, policy: str = "raise", training: bool = False, **kwargs) -> DepthDataset:
    transform = build_depth_train_transform(16, colour_jitter=None, seed=0) if training else None
    return DepthDataset(root / "images", root / "depth", transform=transform, on_bad_sample=policy, **kwargs)


def test_16_bit_png_reads_exact_metres_and_invalid_value_is_zero(tmp_path: Path) -> None:
    mm = np.array([[0, 1, 999], [1000, 65535, 12345]], dtype=np.uint16)
    path = write_depth(tmp_path / "d.png", mm)
    depth = read_depth(path, depth_scale=1000.0, invalid_value=0)
    assert depth.dtype == np.float32
    assert depth.tolist() == np.float32([[0.0, 0.001, 0.999], [1.0, 65.535, 12.345]]).tolist()
    kitti = read_depth(path, depth_scale=256.0, invalid_value=65535)  # another scale and invalid value
    assert kitti.tolist() == np.float32([[0.0, 1 / 256, 999 / 256], [1000 / 256, 0.0, 12345 / 256]]).tolist()


@pytest.mark.parametrize("suffix", [".npy", ".tiff", ".tif"])
def test_float_maps_read_as_metres_with_nan_inf_and_invalid_value_as_zero(tmp_path: Path, suffix: str) -> None:
    metres = np.array([[1.25, np.nan, 3.0], [np.inf, -1.0, 9.875]], dtype=np.float32)
    path = tmp_path / f"d{suffix}"
    np.save(path, metres) if suffix == ".npy" else cv2.imwrite(str(path), metres)
    depth = read_depth(path, depth_scale=1000.0, invalid_value=-1)  # depth_scale does not apply to float maps
    assert depth.tolist() == [[1.25, 0.0, 3.0], [0.0, 0.0, 9.875]]
    with pytest.raises(BadSampleError, match=r"negative depths \(down to -1 m\).*data.invalid_value"):
        read_depth(path, invalid_value=0)


def test_float64_tiff_and_npy_keep_metres(tmp_path: Path) -> None:
    metres = np.array([[0.5, 2.0], [0.0, 7.25]])
    cv2.imwrite(str(tmp_path / "d.tif"), metres)
    np.save(tmp_path / "d.npy", metres)
    for path in (tmp_path / "d.tif", tmp_path / "d.npy"):
        assert read_depth(path).tolist() == metres.tolist()


def test_wrong_types_and_corrupt_float_maps_are_bad_files(tmp_path: Path) -> None:
    np.save(tmp_path / "mm.npy", np.ones((2, 3), np.uint16))
    with pytest.raises(BadSampleError, match=r"the depth map is a uint16 array of shape \(2, 3\), expected an H×W float "
                                             r"array of metres\. Rewrite it as a 16-bit PNG"):
        read_depth(tmp_path / "mm.npy")
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((2, 3, 3), np.uint16))
    with pytest.raises(BadSampleError, match=r"the depth map is a colour PNG \(PIL mode 'RGB'\)"):
        read_depth(tmp_path / "rgb.png")
    for name, reason in (("bad.npy", "cannot decode the depth map: "), ("bad.tiff", "not a TIFF OpenCV can read")):
        (tmp_path / name).write_bytes(b"garbage")
        with pytest.raises(BadSampleError, match=reason) as err:
            read_depth(tmp_path / name)
        assert err.value.file == str(tmp_path / name)


def test_items_pair_by_stem_and_convert_grayscale_images(tmp_path: Path) -> None:
    root = write_pairs(tmp_path, [(5, 7), (9, 4)], suffix=".npy")
    Image.open(root / "images" / "im1.png").convert("L").save(root / "images" / "im1.png")
    ds = dataset(root, depth_suffix=".npy")
    assert ds.names == ["im0", "im1"] and len(ds) == 2
    item = ds[1]
    assert item["image"].shape == (9, 4, 3) and item["image"].dtype == np.uint8
    assert np.array_equal(item["image"][..., 0], item["image"][..., 2])  # grey -> RGB
    assert item["depth"].tolist() == (_mm(9, 4).astype(np.float32) / 1000).tolist()
    split = root / "split.txt"
    split.write_text("im1\n\n")
    assert dataset(root, depth_suffix=".npy", split_file=split).names == ["im1"]


def test_tensor_items_with_a_transform(tmp_path: Path) -> None:
    root = write_pairs(tmp_path, [(20, 24)])
    item = dataset(root, training=True)[(0, SEED)]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["depth"].shape == (16, 16) and item["depth"].dtype == torch.float32
    assert item["name"] == "im0"


def test_orphans_and_missing_folders_are_named(tmp_path: Path) -> None:
    root = write_pairs(tmp_path, [(4, 4), (4, 4)])
    (root / "depth" / "im1.png").unlink()
    with pytest.raises(ValueError, match=r"1 image\(s\) without a depth map in \S+depth: im1\.png"):
        dataset(root)
    with pytest.raises(FileNotFoundError, match=r"my set folder not found: \S+nowhere\nhow to get it"):
        DepthDataset(tmp_path / "nowhere", root / "depth", dataset_name="my set", layout_hint="how to get it")
    with pytest.raises(ValueError, match=r"depth_suffix '\.jpg' must end in one of"):
        dataset(root, depth_suffix=".jpg")


# kind -> (damage training pair 1 given its image and depth paths, returning the bad file; the reason it gets)
KINDS = {
    "8-bit depth PNG": (
        lambda image, depth: Image.fromarray(np.full((20, 24), 9, np.uint8)).save(depth) or depth,
        r"the depth map is an 8-bit PNG \(PIL mode 'L'\); expected a 16-bit single-channel PNG \(uint16, value / "
        r"depth_scale = metres\)"),
    "size mismatch": (
        lambda image, depth: write_depth(depth, _mm(19, 24)),
        r"size mismatch: the depth map is 24x19 \(WxH\) but its image \S+im1\.png is 24x20"),
    "corrupt depth": (
        lambda image, depth: depth.write_bytes(b"not a png") and depth,
        r"cannot decode the depth map: not an image format"),
    "corrupt image": (
        lambda image, depth: image.write_bytes(image.read_bytes()[:40]) and image,
        r"cannot decode the image: "),
}


@pytest.mark.parametrize("kind", KINDS)
def test_bad_file_raises_naming_it_or_is_replaced_by_the_next_with_its_seed(tmp_path: Path, kind: str) -> None:
    root = write_pairs(tmp_path, [(20, 24)] * 3)
    damage, reason = KINDS[kind]
    bad = damage(root / "images" / "im1.png", root / "depth" / "im1.png")
    with pytest.raises(BadSampleError) as err:
        dataset(root, training=True)[(1, SEED)]
    message = str(err.value)
    assert message.startswith(f"bad data file {bad}: ") and re.search(reason, message), message
    assert "data.skip_bad_samples=true" in message and err.value.file == str(bad)
    item = dataset(root, "replace", training=True)[(1, SEED)]
    expected = dataset(root, training=True)[(2, SEED)]  # index 2 with the requested sample's seed
    assert item["name"] == "im2" and torch.equal(item["image"], expected["image"])
    assert torch.equal(item["depth"], expected["depth"])
    assert [s.file for s in item[SKIPPED]] == [str(bad)] and re.match(reason, item[SKIPPED][0].reason)


def test_evaluation_drops_a_bad_file_and_the_batch_lists_it(tmp_path: Path) -> None:
    root = write_pairs(tmp_path, [(6, 8), (7, 9)])
    bad = root / "depth" / "im0.png"
    Image.fromarray(np.full((6, 8), 5, np.uint8)).save(bad)  # 8-bit
    ds = dataset(root, "drop")
    collate = CollateWithSkips(collate_depth_as_lists)
    batch = collate([ds[0], ds[1]])
    assert batch["name"] == ["im1"] and batch["depth"][0].shape == (7, 9)
    assert [s.file for s in batch[SKIPPED]] == [str(bad)]
    assert collate([ds[0]]) == {"image": [], "depth": [], "name": [], SKIPPED: ds[0][SKIPPED]}
