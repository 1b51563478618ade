"""A tiny hand-made COCO panoptic split with the real data's quirks, and predictions perturbed from a ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vitadapter.data.coco_panoptic_format import id_to_rgb

# original category ids with gaps, no colours (so no palette): cat, dog (things), grass (stuff)
CATEGORIES = [{"id": 2, "name": "cat", "isthing": 1, "supercategory": "animal"},
              {"id": 7, "name": "dog", "isthing": 1, "supercategory": "animal"},
              {"id": 150, "name": "grass", "isthing": 0, "supercategory": "plant"}]
GRASS_ID = 5_000_000  # over 256^2: all three PNG channels


def quirky_images() -> list[dict[str, Any]]:
    """Per image: id, size, mode, segment-id map and segments_info (original category ids)."""
    odd = np.zeros((37, 53), dtype=np.int64)  # odd size; grass, a cat, a crowd of cats, a dog, void elsewhere
    odd[20:, :] = GRASS_ID
    odd[2:12, 3:15] = 1
    odd[2:9, 30:50] = 300
    odd[14:30, 20:33] = 70_000
    gray = np.full((20, 30), GRASS_ID, dtype=np.int64)  # a grayscale JPEG, only stuff
    gray[:, :3] = 0
    return [
        {"id": 11, "hw": (37, 53), "mode": "RGB", "ids": odd,
         "segments": [{"id": GRASS_ID, "category_id": 150, "iscrowd": 0}, {"id": 1, "category_id": 2, "iscrowd": 0},
                      {"id": 300, "category_id": 2, "iscrowd": 1}, {"id": 70_000, "category_id": 7, "iscrowd": 0}]},
        {"id": 12, "hw": (20, 30), "mode": "L", "ids": gray,
         "segments": [{"id": GRASS_ID, "category_id": 150, "iscrowd": 0}]},
        # all void: no segment at all
        {"id": 13, "hw": (16, 16), "mode": "RGB", "ids": np.zeros((16, 16), dtype=np.int64), "segments": []},
    ]


def write_panoptic_fixture(root: Path, split: str = "val2017") -> Path:
    """Writes the quirky images in the COCO panoptic layout under `root` (json, PNGs, JPEGs); returns `root`."""
    images_dir, png_dir = root / split, root / "annotations" / f"panoptic_{split}"
    images_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for item in quirky_images():
        h, w = item["hw"]
        stem = f"{item['id']:012d}"
        pixels = rng.integers(0, 256, (h, w, 3) if item["mode"] == "RGB" else (h, w), dtype=np.uint8)
        Image.fromarray(pixels).save(images_dir / f"{stem}.jpg")
        Image.fromarray(id_to_rgb(item["ids"])).save(png_dir / f"{stem}.png")
        images.append({"id": item["id"], "file_name": f"{stem}.jpg", "height": h, "width": w})
        segments = [{**s, "area": int((item["ids"] == s["id"]).sum()), "bbox": [0, 0, 1, 1]} for s in item["segments"]]
        annotations.append({"image_id": item["id"], "file_name": f"{stem}.png", "segments_info": segments})
    document = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations" / f"panoptic_{split}.json").write_text(json.dumps(document))
    return root


def perturbed_prediction(rng: np.random.Generator, gt_ids: np.ndarray, gt: list[dict[str, Any]],
                         num_classes: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A prediction made from a ground truth: shifted, maybe two segments merged, a void hole, a spurious segment,
    a fifth of the classes changed, new segment ids. Returns (H×W ids, [{"id", "category_id"}])."""
    ids = np.roll(gt_ids, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
    labels = {g["id"]: g["category_id"] for g in gt}
    if len(gt) >= 2 and rng.random() < 0.5:
        a, b = rng.choice([g["id"] for g in gt], size=2, replace=False)
        ids[ids == b] = a
    h, w = ids.shape
    spurious = 777_777
    for value in (0, spurious):
        if rng.random() < 0.6:
            y, x = rng.integers(0, max(h - 8, 1)), rng.integers(0, max(w - 8, 1))
            ids[y:y + int(rng.integers(4, 20)), x:x + int(rng.integers(4, 20))] = value
            labels[spurious] = int(rng.integers(num_classes))
    pred_ids = np.zeros_like(ids)
    segments = []
    for n, old in enumerate(v for v in np.unique(ids).tolist() if v != 0):
        new = 1000 + 7 * n
        pred_ids[ids == old] = new
        label = labels[old] if rng.random() > 0.2 else int(rng.integers(num_classes))
        segments.append({"id": new, "category_id": label})
    return pred_ids, segments
