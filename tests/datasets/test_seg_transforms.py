"""Tests for the segmentation pipelines and the two hand-written transforms."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from vitadapter.data.seg_transforms import (
    CatMaxRatioRandomCrop,
    RescaleToFit,
    build_train_transform,
    build_val_transform,
)


def _sample(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 5, (h, w), dtype=np.uint8)


@pytest.mark.parametrize("hw", [(300, 400), (40, 30)])
def test_train_output_has_crop_size(hw: tuple[int, int]) -> None:
    image, mask = _sample(*hw)
    tf = build_train_transform((48, 64), scale=(256, 128), seed=0)
    for _ in range(5):
        out = tf(image=image, mask=mask)
        assert out["image"].shape == (48, 64, 3) and out["image"].dtype == np.float32
        assert out["mask"].shape == (48, 64)
        assert set(np.unique(out["mask"])) <= {0, 1, 2, 3, 4, 255}


def test_padding_fills_mask_with_ignore_and_image_with_zero() -> None:
    image, mask = _sample(40, 30)
    tf = build_train_transform(64, scale=(40, 30), ratio_range=None, ignore_index=255, seed=1)
    out = tf(image=image, mask=mask)
    assert np.all(out["mask"][40:] == 255) and np.all(out["mask"][:, 30:] == 255)  # top-left placement
    assert np.all(out["mask"][:40, :30] != 255)
    assert np.all(out["image"][40:] == 0) and np.all(out["image"][:, 30:] == 0)


def test_rescale_to_fit_matches_mmseg_keep_ratio() -> None:
    image, mask = _sample(300, 400)
    out = RescaleToFit(scale=(2048, 512))(image=image, mask=mask)
    assert out["image"].shape[:2] == (512, 683) and out["mask"].shape == (512, 683)
    assert set(np.unique(out["mask"])) <= set(np.unique(mask))  # nearest neighbour: no new labels
    half = RescaleToFit(scale=(512, 2048), ratio_range=(0.5, 0.5))(image=image, mask=mask)
    assert half["image"].shape[:2] == (256, 341)  # box (1024, 256); order of scale does not matter


def test_rescale_ratio_range_varies_size() -> None:
    image, _ = _sample(100, 100)
    tf = A.Compose([RescaleToFit(scale=(200, 100), ratio_range=(0.5, 2.0))], seed=0)
    sizes = {tf(image=image)["image"].shape[0] for _ in range(20)}
    assert len(sizes) > 5 and min(sizes) >= 50 and max(sizes) <= 200


def _balanced(mask: np.ndarray, ratio: float = 0.75) -> bool:
    values, counts = np.unique(mask[mask != 255], return_counts=True)
    return len(values) > 1 and counts.max() / counts.sum() < ratio


def test_cat_max_ratio_avoids_dominated_crops() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((100, 100), np.uint8)
    mask[:, :40] = 1  # a 40x40 crop is balanced only for 11 <= x0 <= 29: ~31% of positions
    picky = A.Compose([CatMaxRatioRandomCrop(40, 40, cat_max_ratio=0.75)], seed=0)
    plain = A.Compose([CatMaxRatioRandomCrop(40, 40, cat_max_ratio=1.0)], seed=0)
    n = 200
    picky_rate = np.mean([_balanced(picky(image=image, mask=mask)["mask"]) for _ in range(n)])
    plain_rate = np.mean([_balanced(plain(image=image, mask=mask)["mask"]) for _ in range(n)])
    assert picky_rate > 0.85 and plain_rate < 0.5


def test_cat_max_ratio_ignores_ignore_label_and_keeps_last_try() -> None:
    image = np.zeros((60, 60, 3), np.uint8)
    mask = np.full((60, 60), 255, np.uint8)
    mask[:, :30] = 3  # only one real class: no crop can pass, the last try is kept
    out = A.Compose([CatMaxRatioRandomCrop(20, 20, cat_max_ratio=0.75, max_tries=3)], seed=0)(image=image, mask=mask)
    assert out["image"].shape == (20, 20, 3) and out["mask"].shape == (20, 20)


def test_image_and_mask_stay_aligned_through_flip_and_colour() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :20] = 1
    image = np.where(mask[..., None] == 1, 160, 60).astype(np.uint8).repeat(3, axis=2)
    tf = build_train_transform(32, scale=(64, 64), ratio_range=(0.8, 1.2), cat_max_ratio=1.0, seed=0)
    flipped = 0
    for _ in range(30):
        out = tf(image=image, mask=mask)
        img, m = out["image"].mean(axis=2), out["mask"]
        if (m == 1).any() and (m == 0).any():
            assert img[m == 1].mean() > img[m == 0].mean()
            flipped += bool(m[:, -1].max() == 1)  # label 1 on the right edge only after a flip
    assert flipped > 0


def test_train_pipeline_is_seeded() -> None:
    image, mask = _sample(120, 90)
    a = build_train_transform(64, scale=(128, 96), seed=5)(image=image, mask=mask)
    b = build_train_transform(64, scale=(128, 96), seed=5)(image=image, mask=mask)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])


def test_val_transform_rescales_and_normalises_image_only() -> None:
    image = np.full((50, 100, 3), 255, np.uint8)
    out = build_val_transform(scale=(128, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(image=image)
    assert out["image"].shape == (64, 128, 3) and out["image"].dtype == np.float32
    assert np.allclose(out["image"], 2.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ratio_range"):
        RescaleToFit(scale=(10, 10), ratio_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="crop_size"):
        build_train_transform((1, 2, 3))
