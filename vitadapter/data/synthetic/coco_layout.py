"""What the synthetic COCO instances and COCO panoptic writers share: the 2017 splits, JPEGs, the json, the guard."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vitadapter.data.synthetic.marker import METADATA_FILE, marker_complete, read_marker, write_marker

JPEG_QUALITY = 95
# (split, stream id): train and val draw from independent seeded streams.
SPLITS = (("train2017", 0), ("val2017", 1))


def write_image(image_dir: Path, image_id: int, rgb: np.ndarray) -> dict[str, Any]:
    """Write ``image_dir/<image_id:012d>.jpg`` and return its ``images`` entry (id, file_name, width, height)."""
    file_name = f"{image_id:012d}.jpg"
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode {image_dir / file_name}")
    (image_dir / file_name).write_bytes(buf.tobytes())
    h, w = rgb.shape[:2]
    return {"id": image_id, "file_name": file_name, "width": w, "height": h}


def write_annotation_file(path: Path, description: str, images: list[dict[str, Any]],
                          annotations: list[dict[str, Any]], categories: list[dict[str, Any]]) -> None:
    """Write a split's json as COCO's (info, licenses, images, annotations, categories), without spaces."""
    document = {
        "info": {"description": description, "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path.write_text(json.dumps(document, separators=(",", ":")))


def write_coco_layout(root: str | Path, num_train: int, num_val: int, seed: int, params: dict[str, Any],
                      kind: str, write_split: Callable[[Path, str, int, int], None]) -> Path:
    """Write both splits between the incomplete and the complete marker, unless that set is already complete.

    Args:
        root: Dataset root to create or refresh.
        num_train: Number of training images (>= 1).
        num_val: Number of validation images (>= 1).
        seed: Base seed (>= 0).
        params: The marker's parameters.
        kind: The annotation files' prefix, ``annotations/<kind>_<split>.json``.
        write_split: Writes one split: (root, split, stream id, image count).

    Returns:
        The dataset root.

    Raises:
        FileExistsError: If ``root`` already holds split folders or annotation files that were not written here.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    root = Path(root)
    if marker_complete(root, params):
        return root
    ours = [root / split for split, _ in SPLITS] + [root / "annotations" / f"{kind}_{s}.json" for s, _ in SPLITS]
    existing = [p for p in ours if p.exists()]
    if existing and read_marker(root) is None:
        raise FileExistsError(
            f"{existing[0]} exists but {root / METADATA_FILE} does not, so this looks like a real dataset. "
            "Refusing to overwrite it: choose an empty folder for the synthetic data.")
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    write_marker(root, params, complete=False)
    for split, stream in SPLITS:
        write_split(root, split, stream, num_train if stream == 0 else num_val)
    write_marker(root, params, complete=True)
    return root
