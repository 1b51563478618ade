"""Depth pipelines: crop and flip keep image and depth aligned, padding is invalid depth, depth values are never
invented, colour changes the image only, evaluation leaves the depth alone, and a sample key fixes the augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitadapter.data.depth_dataset import DepthDataset
from vitadapter.data.depth_transforms import (
    DEFAULT_COLOUR_JITTER,
    build_depth_train_transform,
    build_depth_val_transform,
)

PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # normalised image = pixel / 255


def coded(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An image whose pixel (r, c) is (r, c, 200) and a depth that encodes the same: (256 r + c + 1) mm."""
    rows, cols = np.mgrid[0:h, 0:w]
    image = np.stack([rows, cols, np.full_like(rows, 200)], axis=-1).astype(np.uint8)
    depth = ((256 * rows + cols + 1) / 1000).astype(np.float32)
    return image, depth


def decode(image: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, col) read from the transformed image and from the depth, at the pixels with depth."""
    valid = depth > 0
    pixels = np.rint(image[valid] * 255).astype(int)
    mm = np.rint(depth[valid] * 1000).astype(int) - 1
    return pixels[:, 0], pixels[:, 1], mm // 256, mm % 256


@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (101, 77)])
def test_crop_and_flip_keep_image_and_depth_aligned(hw: tuple[int, int]) -> None:
    image, depth = coded(*hw)
    transform = build_depth_train_transform((24, 32), colour_jitter=None, seed=0, **PLAIN)
    flips = set()
    for _ in range(12):
        out = transform(image=image, mask=depth)
        assert out["image"].shape == (24, 32, 3) and out["mask"].shape == (24, 32) and out["mask"].dtype == np.float32
        img_r, img_c, d_r, d_c = decode(out["image"], out["mask"])
        assert np.array_equal(img_r, d_r) and np.array_equal(img_c, d_c)
        assert set(out["mask"].ravel()) <= set(depth.ravel())  # no depth value invented
        flips.add(bool(img_c[0] > img_c[1]))  # columns run backwards after a flip
    assert flips == {True, False}


def test_small_images_are_padded_with_invalid_depth() -> None:
    image, depth = coded(11, 13)
    transform = build_depth_train_transform((24, 32), flip=False, colour_jitter=None, seed=0, **PLAIN)
    out = transform(image=image, mask=depth)
    assert np.array_equal(out["mask"][:11, :13], depth)  # top-left placement, nothing cropped
    assert np.all(out["mask"][11:] == 0) and np.all(out["mask"][:, 13:] == 0)
    assert np.all(out["image"][11:] == 0) and np.all(out["image"][:, 13:] == 0)


def test_colour_augmentation_changes_the_image_only() -> None:
    image, depth = coded(24, 32)
    image[..., 2] = 120
    transform = build_depth_train_transform((24, 32), flip=False, colour_jitter={**DEFAULT_COLOUR_JITTER, "p": 1.0},
                                             seed=3, **PLAIN)
    out = transform(image=image, mask=depth)
    assert np.array_equal(out["mask"], depth)
    assert not np.allclose(out["image"] * 255, image, atol=1)


def test_fixed_train_scale_resizes_depth_with_nearest_neighbour() -> None:
    image, depth = coded(40, 60)
    depth[10:20, 10:20] = 0.0
    transform = build_depth_train_transform((30, 45), flip=False, colour_jitter=None, train_scale=(45, 30), seed=0,
                                            **PLAIN)
    out = transform(image=image, mask=depth)
    assert out["mask"].shape == (30, 45)
    assert set(out["mask"].ravel()) <= set(depth.ravel()) and (out["mask"] == 0).any()


def test_evaluation_rescales_the_image_into_test_scale_or_keeps_it() -> None:
    image, _ = coded(45, 61)
    assert build_depth_val_transform(None)(image=image)["image"].shape == (45, 61, 3)
    assert build_depth_val_transform((122, 90))(image=image)["image"].shape == (90, 122, 3)


def test_a_training_key_fixes_the_augmentation(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "depth").mkdir()
    image, depth = coded(50, 70)
    Image.fromarray(image).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.rint(depth * 1000).astype(np.uint16)).save(tmp_path / "depth" / "a.png")
    ds = DepthDataset(tmp_path / "images", tmp_path / "depth",
                      transform=build_depth_train_transform((24, 32), colour_jitter=DEFAULT_COLOUR_JITTER, seed=0))
    first, again, other = ds[(0, 7)], ds[(0, 7)], ds[(0, 8)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["depth"], again["depth"])
    assert not torch.equal(first["depth"], other["depth"])


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="crop_size must be a positive int or"):
        build_depth_train_transform((0, 32))
    with pytest.raises(ValueError, match="colour_jitter.p must be in"):
        build_depth_train_transform(32, colour_jitter={"p": 2.0})
    with pytest.raises(ValueError, match="colour_jitter.gamma must satisfy"):
        build_depth_train_transform(32, colour_jitter={"gamma": (1.2, 0.8)})
