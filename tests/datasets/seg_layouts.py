"""Tiny segmentation datasets written in the exact on-disk layouts of folder_seg, Cityscapes and Pascal VOC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FOLDER_CLASSES = ["background", "crack", "rust"]
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0, 0, 0] * 251
# Cityscapes trainId (0..18) -> labelId, as cityscapesscripts' labels.py defines them
CITYSCAPES_LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def _pair(rng: np.random.Generator, hw: tuple[int, int], classes: list[int], ignore: bool) -> tuple[np.ndarray, np.ndarray]:
    """An image of coloured blocks and its label map: one class a vertical band, 255 on a boundary row if asked."""
    h, w = hw
    label = np.zeros((h, w), np.uint8)
    chosen = rng.choice(classes, size=4)
    for i, value in enumerate(chosen):
        label[:, i * w // 4:(i + 1) * w // 4] = value
    wide = label.astype(np.int64)
    image = np.stack([(wide * 37) % 256, (wide * 91) % 256, (wide * 53) % 256], -1)
    image = np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    if ignore:
        label[h // 2] = 255
    return image, label


def write_folder_seg(root: Path, num_train: int = 4, num_val: int = 2, seed: int = 0) -> Path:
    """`root/images/{train,val}/*`, `root/masks/{train,val}/*.png`, `root/classes.txt` (3 classes, with colours)."""
    rng = np.random.default_rng(seed)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("background #000000\ncrack #ff0000\n\nrust #00ff00\n")
    for split, count in (("train", num_train), ("val", num_val)):
        for sub in ("images", "masks"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, label = _pair(rng, (48, 64), [0, 1, 2], ignore=i == 0)
            suffix = ".png" if i % 2 else ".jpg"  # mixed image formats in one folder
            Image.fromarray(image).save(root / "images" / split / f"part_{i:03d}{suffix}")
            Image.fromarray(label).save(root / "masks" / split / f"part_{i:03d}.png")
    return root


def write_cityscapes(root: Path, seed: int = 0) -> Path:
    """leftImg8bit/gtFine in city folders; besides the trainId labels, the labelIds/color/polygon files of the
    official download (which must not be paired with the images)."""
    rng = np.random.default_rng(seed)
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for city in cities:
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                stem = f"{city}_{i:06d}_000019"
                image, train_ids = _pair(rng, (64, 128), list(range(19)), ignore=True)
                label_ids = np.where(train_ids == 255, 0, np.array(CITYSCAPES_LABEL_IDS + [0] * 237)[train_ids])
                Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
                gt = root / "gtFine" / split / city
                Image.fromarray(train_ids).save(gt / f"{stem}_gtFine_labelTrainIds.png")
                Image.fromarray(label_ids.astype(np.uint8)).save(gt / f"{stem}_gtFine_labelIds.png")
                Image.fromarray(image).save(gt / f"{stem}_gtFine_color.png")
                (gt / f"{stem}_gtFine_polygons.json").write_text("{}")
    return root


def write_pascal_voc(root: Path, seed: int = 0) -> Path:
    """VOCdevkit/VOC2012: JPEGImages (more images than the segmentation splits list), SegmentationClass palette
    PNGs with 255 boundaries, ImageSets/Segmentation/{train,val}.txt; `root` is the VOC2012 folder. Also the SBD
    augmented set as commonly prepared: SegmentationClassAug (grayscale PNGs of the train images and of SBD-only
    images) and ImageSets/Segmentation/train_aug.txt."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    splits = {"train": ["2007_000032", "2007_000039", "2008_000123", "2009_000201"], "val": ["2007_000033", "2010_000005"]}
    for stems in splits.values():
        for stem in stems:
            image, label = _pair(rng, (60, 80), list(range(21)), ignore=True)
            Image.fromarray(image).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
            mask = Image.fromarray(label)  # putpalette makes it mode P, as VOC stores them
            mask.putpalette(VOC_PALETTE)
            mask.save(root / "SegmentationClass" / f"{stem}.png")
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(root / "JPEGImages" / "2011_999999.jpg")  # detection only
    for split, stems in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    (root / "SegmentationClassAug").mkdir(exist_ok=True)
    aug = [*splits["train"], "2008_000002", "2008_000003"]
    for stem in aug:
        if not (root / "JPEGImages" / f"{stem}.jpg").is_file():
            image, label = _pair(rng, (60, 80), list(range(21)), ignore=False)
            Image.fromarray(image).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        else:
            label = np.array(Image.open(root / "SegmentationClass" / f"{stem}.png"))
        Image.fromarray(label).save(root / "SegmentationClassAug" / f"{stem}.png")
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(aug) + "\n")
    return root
