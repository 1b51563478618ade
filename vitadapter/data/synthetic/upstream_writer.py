"""Write the upstream pretraining set (``upstream_shapes``) once, in an ADE20K-like layout with 16-bit labels.

::

    root/
      images/training/upstream_train_00000001.jpg ...        RGB, JPEG quality 95
      annotations/training/upstream_train_00000001.png ...   uint16, index into class_names (1028 classes)
      images/validation/upstream_val_00000001.jpg ...
      annotations/validation/upstream_val_00000001.png ...
      synthetic.json                                          parameters, class names, completion flag

Labels need 16 bits (1028 classes), so the PNGs are single-channel uint16. ``synthetic.json`` is written first with
``"complete": false`` and rewritten with ``true`` at the end, as for the other synthetic sets: an interrupted write
is recognised and rewritten, and a folder holding other data is never overwritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vitadapter.data.synthetic.marker import METADATA_FILE, marker_complete, read_marker, write_marker
from vitadapter.data.synthetic.upstream_shapes import (
    UPSTREAM_SCENE_VERSION,
    render_upstream_scene,
    upstream_class_names,
)

_FORMAT = "upstream_shapes"
_FORMAT_VERSION = 1
_JPEG_QUALITY = 95
# (split folder, file-name prefix, stream id): train and val draw from independent seeded streams.
UPSTREAM_SPLITS = (("training", "upstream_train", 0), ("validation", "upstream_val", 1))


def _parameters(num_train: int, num_val: int, image_size: int, max_objects: int, seed: int) -> dict[str, Any]:
    """The marker's parameters (checked: at least one image per split, a non-negative seed)."""
    if min(num_train, num_val) < 1 or seed < 0:
        raise ValueError(f"the upstream set needs num_train >= 1, num_val >= 1 and seed >= 0; got {num_train}, "
                         f"{num_val} and {seed}")
    return {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "scene_version": UPSTREAM_SCENE_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": int(image_size),
        "max_objects": int(max_objects),
        "seed": int(seed),
        "class_names": upstream_class_names(),
    }


def is_upstream_set_complete(root: str | Path, num_train: int = 20000, num_val: int = 200, image_size: int = 128,
                             max_objects: int = 6, seed: int = 0) -> bool:
    """Whether ``root`` holds a finished upstream set written with these parameters (``write_upstream_set``'s)."""
    return marker_complete(Path(root), _parameters(num_train, num_val, image_size, max_objects, seed))


def write_upstream_set(root: str | Path, num_train: int = 20000, num_val: int = 200, image_size: int = 128,
                       max_objects: int = 6, seed: int = 0) -> Path:
    """Write the upstream set, unless the same set is already complete there.

    Args:
        root: the folder to write (created if needed).
        num_train, num_val: images per split (>= 1 each).
        image_size: side of the square images in pixels.
        max_objects: most objects per image (0 to this many are drawn).
        seed: base seed (>= 0). Image ``i`` of a split depends on (seed, split, i) alone: the same seed writes the
            same bytes, and more training images leave the validation images as they were.

    Returns:
        The dataset root.

    Raises:
        FileExistsError: If ``root`` already holds images or annotations that were not written here.
    """
    root = Path(root)
    params = _parameters(num_train, num_val, image_size, max_objects, seed)
    if marker_complete(root, params):
        return root
    existing = [root / sub for sub in ("images", "annotations") if (root / sub).exists()]
    marker = read_marker(root)
    if existing and (marker is None or marker.get("format", _FORMAT) != _FORMAT):
        raise FileExistsError(
            f"{existing[0]} exists but {root / METADATA_FILE} does not record an upstream set written here, so "
            "this folder holds other data. Refusing to overwrite it: choose an empty folder for the upstream set."
        )
    root.mkdir(parents=True, exist_ok=True)
    write_marker(root, params, complete=False)
    for folder, prefix, stream in UPSTREAM_SPLITS:
        count = num_train if stream == 0 else num_val
        _write_split(root, folder, prefix, [np.random.default_rng([seed, stream, i]) for i in range(1, count + 1)],
                     image_size, max_objects)
    write_marker(root, params, complete=True)
    return root


def _write_split(root: Path, folder: str, prefix: str, generators: list[np.random.Generator], image_size: int,
                 max_objects: int) -> None:
    """Renders one scene per generator into ``images/folder`` and ``annotations/folder`` (emptied first: leftovers of an
    earlier, larger or interrupted write go)."""
    image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
    for folder_path in (image_dir, label_dir):
        shutil.rmtree(folder_path, ignore_errors=True)
        folder_path.mkdir(parents=True)
    for number, rng in enumerate(generators, start=1):
        scene = render_upstream_scene(rng, image_size, max_objects)
        name = f"{prefix}_{number:08d}"
        ok_image, jpeg = cv2.imencode(".jpg", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
                                      [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        ok_labels, png = cv2.imencode(".png", scene.labels)
        if not (ok_image and ok_labels):
            raise OSError(f"could not encode {image_dir / name}.jpg or {label_dir / name}.png")
        (image_dir / f"{name}.jpg").write_bytes(jpeg.tobytes())
        (label_dir / f"{name}.png").write_bytes(png.tobytes())
