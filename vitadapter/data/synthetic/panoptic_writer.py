"""Write synthetic panoptic scenes in the exact on-disk layout of COCO panoptic 2017.

The result is read by the same ``COCOPanopticDataset`` as the real data::

    root/
      train2017/000000000001.jpg ...                       RGB, JPEG quality 95
      val2017/000000000001.jpg ...
      annotations/panoptic_train2017.json                  images, annotations (segments_info), categories
      annotations/panoptic_train2017/000000000001.png ...  segment id = R + 256·G + 256²·B, 0 = void
      annotations/panoptic_val2017.json
      annotations/panoptic_val2017/000000000001.png ...
      synthetic.json                                       parameters, completion flag

Category ids have gaps as COCO's (things below 92, stuff from 92 on); segment ids are category id × 1000 +
the instance number, so they use all three PNG channels. ``synthetic.json`` is written first with
``"complete": false`` and rewritten with ``true`` at the end, as for the other writers.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from vitadapter.data.coco_panoptic_format import segment_areas_and_boxes, write_panoptic_png
from vitadapter.data.synthetic.coco_layout import write_annotation_file, write_coco_layout, write_image
from vitadapter.data.synthetic.marker import marker_complete
from vitadapter.data.synthetic.panoptic_scenes import (
    PANOPTIC_CLASSES,
    PANOPTIC_SCENE_VERSION,
    THING_CLASSES,
    PanopticScene,
    render_panoptic_scene,
)

SYNTHETIC_PANOPTIC_CATEGORY_IDS: tuple[int, ...] = (1, 3, 6, 9, 92, 100, 149, 193)
_FORMAT = "coco_panoptic"
_FORMAT_VERSION = 1


def synthetic_panoptic_categories() -> list[dict[str, Any]]:
    """The ``categories`` of the synthetic set: id, name, supercategory, isthing and a colour each."""
    colours = [(220, 20, 60), (0, 0, 142), (250, 170, 30), (106, 0, 228),
               (70, 130, 180), (152, 251, 152), (128, 64, 128), (190, 153, 153)]
    return [{"id": cid, "name": name, "supercategory": "shape" if k < len(THING_CLASSES) else "texture",
             "isthing": int(k < len(THING_CLASSES)), "color": list(colours[k])}
            for k, (cid, name) in enumerate(zip(SYNTHETIC_PANOPTIC_CATEGORY_IDS, PANOPTIC_CLASSES))]


def _parameters(num_train: int, num_val: int, image_size: int, max_things: int, seed: int) -> dict[str, Any]:
    return {"format": _FORMAT, "format_version": _FORMAT_VERSION, "scene_version": PANOPTIC_SCENE_VERSION,
            "num_train": int(num_train), "num_val": int(num_val), "image_size": int(image_size),
            "max_things": int(max_things), "seed": int(seed), "class_names": list(PANOPTIC_CLASSES),
            "category_ids": list(SYNTHETIC_PANOPTIC_CATEGORY_IDS)}


def is_synthetic_coco_panoptic_complete(root: str | Path, num_train: int = 1000, num_val: int = 100,
                                        image_size: int = 128, max_things: int = 5, seed: int = 0) -> bool:
    """Tell whether ``root`` already holds a finished synthetic panoptic set written with these parameters."""
    return marker_complete(Path(root), _parameters(num_train, num_val, image_size, max_things, seed))


def _segment_map(scene: PanopticScene) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The scene's H×W segment-id map and its segments_info (original category ids)."""
    ids = np.zeros(scene.image.shape[:2], dtype=np.int64)
    counts: dict[int, int] = {}
    segments = []
    for segment in scene.segments:
        category = SYNTHETIC_PANOPTIC_CATEGORY_IDS[segment.class_index]
        counts[category] = counts.get(category, 0) + 1
        segment_id = category * 1000 + counts[category]
        ids[segment.mask] = segment_id
        segments.append({"id": segment_id, "category_id": category, "iscrowd": int(segment.iscrowd)})
    areas, boxes = segment_areas_and_boxes(ids, [s["id"] for s in segments])
    for segment, area, box in zip(segments, areas, boxes):
        segment.update(area=area, bbox=box)
    return ids, segments


def _write_split(root: Path, split: str, stream: int, count: int, image_size: int, max_things: int,
                 seed: int) -> None:
    """Render ``count`` scenes into ``root/split`` and ``annotations/panoptic_{split}/`` and write the json."""
    image_dir, png_dir = root / split, root / "annotations" / f"panoptic_{split}"
    for folder in (image_dir, png_dir):
        shutil.rmtree(folder, ignore_errors=True)  # leftovers of an earlier, larger or interrupted run
        folder.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        scene = render_panoptic_scene(np.random.default_rng([seed, stream, image_id]), image_size, max_things)
        images.append(write_image(image_dir, image_id, scene.image))
        ids, segments = _segment_map(scene)
        png_name = f"{image_id:012d}.png"
        write_panoptic_png(png_dir / png_name, ids)
        annotations.append({"image_id": image_id, "file_name": png_name, "segments_info": segments})
    write_annotation_file(root / "annotations" / f"panoptic_{split}.json",
                          "vitadapter synthetic shapes and textures in the COCO panoptic format", images, annotations,
                          synthetic_panoptic_categories())


def write_synthetic_coco_panoptic(root: str | Path, num_train: int = 1000, num_val: int = 100,
                                  image_size: int = 128, max_things: int = 5, seed: int = 0) -> Path:
    """Write the synthetic panoptic set in the COCO panoptic layout, unless the same set is already complete there.

    The arguments are ``write_synthetic_coco``'s, with ``max_things`` (maximum things per image) for ``max_objects``.

    Returns:
        The dataset root.

    Raises:
        FileExistsError: If ``root`` already holds panoptic files that were not written here.
    """
    params = _parameters(num_train, num_val, image_size, max_things, seed)
    split_writer = partial(_write_split, image_size=image_size, max_things=max_things, seed=seed)
    return write_coco_layout(root, num_train, num_val, seed, params, "panoptic", split_writer)
