"""Datasets where whole training crops have no labelled pixel and some images have no object.

Written in the real on-disk layouts (ADE20K, folder_seg, COCO 2017) so the real datasets, transforms and
collate functions produce the batches: an ADE20K set whose labels are 0 ("other", ignored after
`reduce_zero_label`) almost everywhere, the same as a folder_seg set whose masks are 255 almost everywhere,
and a COCO set in which some training and validation images list no annotation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vitadapter.data import write_synthetic_coco

# (height, width) of each image, odd sizes between 40 and 96 px, and the class of its labelled pixels (None: it
# holds no labelled pixel at all). With 6 training images of which 2 are labelled, batches of 2 and one epoch of
# 3 steps, at least one batch is entirely ignored whatever the shuffle. Classes are mask values: ADE20K's 1-based
# ones (0-based after reduce_zero_label), folder_seg's class indices.
TRAIN_IMAGES = [((41, 57), None), ((96, 71), 1), ((63, 88), None), ((48, 48), None), ((77, 45), 2), ((53, 90), None)]
VAL_IMAGES = [((45, 67), 1), ((59, 43), None)]
GRAYSCALE_INDEX = 3  # this training image is a single-channel file, as some ADE20K images are


def sparse_label(hw: tuple[int, int], value: int | None, background: int) -> np.ndarray:
    """`background` everywhere; with a `value`, 2-px rows and 1-px columns of it every 12 px (about a quarter of
    the pixels), so any crop of 12 px or more of that image holds labelled pixels."""
    label = np.full(hw, background, np.uint8)
    if value is not None:
        label[::12] = value
        label[1::12] = value
        label[:, ::12] = value
    return label


def _image(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB image whose colour follows the label, plus noise."""
    wide = label.astype(np.int64)
    image = np.stack([(wide * 67) % 256, (wide * 101) % 256, (wide * 29) % 256], -1)
    return np.clip(image + rng.integers(0, 40, image.shape), 0, 255).astype(np.uint8)


def _write_pair(image: np.ndarray, label: np.ndarray, image_path: Path, label_path: Path, gray: bool) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(image)
    (pil.convert("L") if gray else pil).save(image_path, quality=95)
    Image.fromarray(label).save(label_path)


def write_sparse_ade20k(root: Path, seed: int = 0) -> Path:
    """ADEChallengeData2016 layout (`images|annotations/{training,validation}`), labels 0 almost everywhere."""
    rng = np.random.default_rng(seed)
    for folder, prefix, images in (("training", "ADE_train", TRAIN_IMAGES), ("validation", "ADE_val", VAL_IMAGES)):
        for i, (hw, value) in enumerate(images):
            label = sparse_label(hw, value, background=0)
            stem = f"{prefix}_{i + 1:08d}"
            gray = folder == "training" and i == GRAYSCALE_INDEX
            _write_pair(_image(label, rng), label, root / "images" / folder / f"{stem}.jpg",
                        root / "annotations" / folder / f"{stem}.png", gray=gray)
    return root


def write_sparse_folder_seg(root: Path, seed: int = 0) -> Path:
    """folder_seg layout (`images|masks/{train,val}`, `classes.txt`: 4 classes), masks 255 almost everywhere."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("background\nwall\nfloor\nceiling\n")
    for split, images in (("train", TRAIN_IMAGES), ("val", VAL_IMAGES)):
        for i, (hw, value) in enumerate(images):
            label = sparse_label(hw, value, background=255)
            _write_pair(_image(label, rng), label, root / "images" / split / f"part_{i:03d}.png",
                        root / "masks" / split / f"part_{i:03d}.png", gray=split == "train" and i == GRAYSCALE_INDEX)
    return root


def write_coco_with_empty_images(root: Path, empty: dict[str, list[int]]) -> Path:
    """A synthetic COCO 2017 set (96 px, 6 train and 4 val images) whose listed image ids have no annotation.

    Those images stay listed in `images` (COCOeval scores them: any detection there is a false positive); the
    shapes they show are simply not annotated.

    Args:
        root: dataset root.
        empty: per split (`train2017`, `val2017`), the image ids whose annotations are removed.

    Returns:
        The dataset root (use it with `data.synthetic=null`, or the datamodule would rewrite it).
    """
    write_synthetic_coco(root, num_train=6, num_val=4, image_size=96, max_objects=2, seed=0)
    for split, ids in empty.items():
        path = root / "annotations" / f"instances_{split}.json"
        document = json.loads(path.read_text())
        document["annotations"] = [a for a in document["annotations"] if a["image_id"] not in ids]
        path.write_text(json.dumps(document))
    return root
