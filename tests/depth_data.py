"""A small NYU-layout depth set with the quirks of real data, and the overrides that shrink a depth run to seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import _TINY_RUN_OVERRIDES, _neck_overrides

# (height, width) per image: odd sizes, one smaller than the training crop (32 x 48), NYU's own 480 x 640 in test
TRAIN_SIZES = [(61, 83), (48, 64), (57, 71), (30, 40), (64, 96), (49, 67)]
TEST_SIZES = [(480, 640), (53, 77), (45, 61)]
HOLE_MM = 0  # NYU's invalid value


def scene_depth_mm(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A floor rising to the top of the image (1-8 m) with noise, in millimetres, and a Kinect-like hole."""
    rows = np.linspace(8.0, 1.0, height, dtype=np.float64)[:, None]
    depth = np.broadcast_to(rows, (height, width)) + rng.uniform(0.0, 0.5, (height, width))
    mm = np.rint(depth * 1000).astype(np.uint16)
    mm[: height // 5, : width // 4] = HOLE_MM
    return mm


def write_nyu_fixture(root: Path, seed: int = 0) -> Path:
    """images/{train,test}/NAME.jpg + annotations/{train,test}/NAME.png (uint16 mm, 0 = invalid).

    Quirks: odd sizes, a training image smaller than the crop, a grayscale image, a test map with no valid pixel.
    """
    rng = np.random.default_rng(seed)
    for split, sizes in (("train", TRAIN_SIZES), ("test", TEST_SIZES)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for index, (height, width) in enumerate(sizes):
            name = f"{split}_{index:03d}"
            mm = scene_depth_mm(height, width, rng)
            if split == "test" and index == len(sizes) - 1:
                mm[:] = HOLE_MM
            shade = (255 * (1 - mm.astype(np.float64) / 9000)).clip(0, 255).astype(np.uint8)
            rgb = np.stack([shade, rng.integers(0, 256, (height, width), dtype=np.uint8), shade[::-1]], axis=-1)
            image = Image.fromarray(rgb).convert("L") if index == 1 else Image.fromarray(rgb)
            image.save(root / "images" / split / f"{name}.jpg", quality=95)
            Image.fromarray(mm).save(root / "annotations" / split / f"{name}.png")
    return root


def tiny_depth_overrides(data_root: Path, neck: str | None = None) -> list[str]:
    """Overrides that shrink a depth experiment (data=nyu) to seconds on a CPU; `neck`: the experiment's own (see
    `experiment_neck`, which sets its width) or another."""
    return [
        "model/backbone=test_vit",
        "model.backbone.name=test_vit",
        "model.backbone.model_kwargs={}",
        # the experiments tap a ViT-L's blocks; test_vit has 6 (null: 4 evenly spaced)
        "model.backbone.out_indices=null",
        *_neck_overrides(neck),
        f"data.root={data_root}",
        "data.crop_size=[32,48]",
        "data.batch_size=2",
        "data.val_batch_size=2",
        "data.num_workers=0",
        "model.loss.warm_up_steps=1",
        *_TINY_RUN_OVERRIDES,
    ]
