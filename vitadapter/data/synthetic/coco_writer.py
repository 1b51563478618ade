"""Write a synthetic shapes dataset in the exact on-disk layout of COCO 2017 instances.

The result is read by the same ``COCODetectionDataset`` and scored by the same ``COCOEvaluator`` as
the real data::

    root/
      train2017/000000000001.jpg ...              RGB, JPEG quality 95
      val2017/000000000001.jpg ...
      annotations/instances_train2017.json        images, categories, annotations (polygons)
      annotations/instances_val2017.json
      synthetic.json                               parameters, completion flag

Category ids are deliberately not contiguous (like COCO's 1..90 for 80 classes), so the label
mapping is exercised. Each object's visible mask is written as polygons, one per connected part, that
pycocotools rasterises back to exactly that mask. ``synthetic.json`` is written first with
``"complete": false`` and rewritten with ``true`` at the end, as for the ADE20K writer.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from vitadapter.data.synthetic.coco_layout import write_annotation_file, write_coco_layout, write_image
from vitadapter.data.synthetic.marker import marker_complete
from vitadapter.data.synthetic.shapes import SCENE_VERSION, SHAPE_CLASSES, Scene, render_scene

SYNTHETIC_COCO_CATEGORY_IDS: tuple[int, ...] = (1, 2, 3, 5, 7, 8, 10, 11)
_FORMAT = "coco"
_FORMAT_VERSION = 1


def _parameters(num_train: int, num_val: int, image_size: int, max_objects: int, seed: int) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "scene_version": SCENE_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": int(image_size),
        "max_objects": int(max_objects),
        "seed": int(seed),
        "class_names": list(SHAPE_CLASSES),
        "category_ids": list(SYNTHETIC_COCO_CATEGORY_IDS),
    }


def is_synthetic_coco_complete(
    root: str | Path,
    num_train: int = 500,
    num_val: int = 50,
    image_size: int = 160,
    max_objects: int = 4,
    seed: int = 0,
) -> bool:
    """Tell whether ``root`` already holds a finished synthetic COCO set written with these parameters.

    Args:
        root: Dataset root.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Image side length in pixels.
        max_objects: Maximum objects per image.
        seed: Base random seed.

    Returns:
        True if ``synthetic.json`` records a complete write with exactly these parameters.
    """
    return marker_complete(Path(root), _parameters(num_train, num_val, image_size, max_objects, seed))


def _outline(contour: np.ndarray) -> np.ndarray:
    """Map a contour traced on the 2x-upsampled mask to pixel-edge corners (k -> ceil(k/2)), without repeats."""
    points = (contour.reshape(-1, 2).astype(np.int64) + 1) // 2
    keep = np.any(points != np.roll(points, 1, axis=0), axis=1)
    return points[keep]


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Polygons of a binary mask, one per connected part, that pycocotools decodes back to the same pixels.

    cv2.findContours traces pixel centres, but a COCO polygon is the outline of the pixel region, so
    the contours are traced on the mask upsampled 2x and mapped to pixel-edge corners. A COCO object
    is the union of its polygons, so holes (rings, objects in front) are cut into the outer outline
    through a zero-width bridge, which pycocotools' even-odd fill leaves empty. Parts with fewer
    than 3 points are dropped.

    Args:
        mask: H×W boolean or 0/1 mask.

    Returns:
        Flat [x0, y0, x1, y1, ...] polygons.
    """
    up = np.repeat(np.repeat(np.asarray(mask, dtype=np.uint8), 2, axis=0), 2, axis=1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    polygons = []
    for i, contour in enumerate(contours):
        if links[i][3] != -1:
            continue  # a hole: spliced into its outer contour below
        outline = _outline(contour)
        if len(outline) < 3:
            continue
        child = links[i][2]
        while child != -1:
            hole = _outline(contours[child])
            dist = ((outline[:, None, :] - hole[None, :, :]) ** 2).sum(axis=-1)
            a, b = np.unravel_index(int(dist.argmin()), dist.shape)
            outline = np.concatenate([outline[: a + 1], hole[b:], hole[: b + 1], outline[a:]])
            child = links[child][0]
        polygons.append([float(v) for v in outline.ravel()])
    return polygons


def _annotations(scene: Scene, image_id: int, next_id: int) -> list[dict[str, Any]]:
    anns = []
    for inst in scene.instances:
        polygons = mask_to_polygons(inst.mask)
        if not polygons:  # render_scene keeps at least half of every object visible, so never in practice
            continue
        rle = mask_utils.encode(np.asfortranarray(inst.mask.astype(np.uint8)))
        anns.append(
            {
                "id": next_id + len(anns),
                "image_id": image_id,
                "category_id": SYNTHETIC_COCO_CATEGORY_IDS[inst.class_index],
                "segmentation": polygons,
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            }
        )
    return anns


def _write_split(
    root: Path, split: str, stream: int, count: int, image_size: int, max_objects: int, seed: int
) -> None:
    """Render ``count`` scenes into ``root/split`` and write ``annotations/instances_{split}.json``."""
    image_dir = root / split
    shutil.rmtree(image_dir, ignore_errors=True)  # drop leftovers of an earlier, larger or interrupted run
    image_dir.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        scene = render_scene(np.random.default_rng([seed, stream, image_id]), image_size, max_objects)
        images.append(write_image(image_dir, image_id, scene.image))
        annotations += _annotations(scene, image_id, next_id=len(annotations) + 1)
    categories = [
        {"id": cid, "name": name, "supercategory": "shape"}
        for cid, name in zip(SYNTHETIC_COCO_CATEGORY_IDS, SHAPE_CLASSES)
    ]
    write_annotation_file(root / "annotations" / f"instances_{split}.json",
                          "vitadapter synthetic shapes in the COCO instances format", images, annotations, categories)


def write_synthetic_coco(
    root: str | Path,
    num_train: int = 500,
    num_val: int = 50,
    image_size: int = 160,
    max_objects: int = 4,
    seed: int = 0,
) -> Path:
    """Write a synthetic shapes dataset in the COCO layout, unless the same set is already complete there.

    Args:
        root: Dataset root to create or refresh.
        num_train: Number of training images (>= 1).
        num_val: Number of validation images (>= 1).
        image_size: Image side length in pixels.
        max_objects: Maximum objects per image (at least one is always drawn).
        seed: Base seed; image ``i`` of a split depends only on (seed, split, i), so the same seed gives
            byte-identical files and changing ``num_train`` leaves the validation set unchanged.

    Returns:
        The dataset root.

    Raises:
        FileExistsError: If ``root`` already holds COCO folders that were not written here.
    """
    params = _parameters(num_train, num_val, image_size, max_objects, seed)
    split_writer = partial(_write_split, image_size=image_size, max_objects=max_objects, seed=seed)
    return write_coco_layout(root, num_train, num_val, seed, params, "instances", split_writer)
