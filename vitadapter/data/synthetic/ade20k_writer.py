"""Write a synthetic shapes dataset in the exact on-disk layout of ADEChallengeData2016.

The result is read by the same ``ADE20KDataset`` as the real data::

    root/
      images/training/ADE_train_00000001.jpg ...        RGB, JPEG quality 95
      annotations/training/ADE_train_00000001.png ...   uint8, 0 = background ("other"), k = SHAPE_CLASSES[k-1]
      images/validation/ADE_val_00000001.jpg ...
      annotations/validation/ADE_val_00000001.png ...
      synthetic.json                                     parameters, class names, completion flag

``synthetic.json`` is written first with ``"complete": false`` and rewritten with ``true`` at the end,
so an interrupted run is recognised (and rewritten) and a folder holding real data is never overwritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vitadapter.data.synthetic.marker import METADATA_FILE, marker_complete, read_marker, write_marker
from vitadapter.data.synthetic.shapes import SCENE_VERSION, SHAPE_CLASSES, render_scene

SYNTHETIC_CLASS_NAMES: tuple[str, ...] = SHAPE_CLASSES
_FORMAT_VERSION = 1
_JPEG_QUALITY = 95
# (split folder, file-name prefix, stream id): train and val draw from independent seeded streams.
_SPLITS = (("training", "ADE_train", 0), ("validation", "ADE_val", 1))


def _parameters(num_train: int, num_val: int, image_size: int, max_objects: int, seed: int,
                style: str = "flat") -> dict[str, Any]:
    # "flat" sets were written before styles existed: their marker stays as it was
    return ({} if style == "flat" else {"style": style}) | {
        "format_version": _FORMAT_VERSION,
        "scene_version": SCENE_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": int(image_size),
        "max_objects": int(max_objects),
        "seed": int(seed),
        "class_names": list(SYNTHETIC_CLASS_NAMES),
    }


def is_synthetic_ade20k_complete(
    root: str | Path,
    num_train: int = 1000,
    num_val: int = 100,
    image_size: int = 128,
    max_objects: int = 4,
    seed: int = 0,
    style: str = "flat",
) -> bool:
    """Tell whether ``root`` already holds a finished synthetic set written with these parameters.

    Args:
        root: Dataset root.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Image side length in pixels.
        max_objects: Maximum objects per image.
        seed: Base random seed.
        style: Scene style (see ``render_scene``).

    Returns:
        True if ``synthetic.json`` records a complete write with exactly these parameters.
    """
    return marker_complete(Path(root), _parameters(num_train, num_val, image_size, max_objects, seed, style))


def _encode(path: Path, ext: str, array: np.ndarray, params: list[int]) -> None:
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def write_synthetic_ade20k(
    root: str | Path,
    num_train: int = 1000,
    num_val: int = 100,
    image_size: int = 128,
    max_objects: int = 4,
    seed: int = 0,
    style: str = "flat",
) -> Path:
    """Write a synthetic shapes dataset in the ADE20K layout (always rewrites the four split folders).

    Args:
        root: Dataset root to create or refresh.
        num_train: Number of training images (>= 1).
        num_val: Number of validation images (>= 1).
        image_size: Image side length in pixels.
        max_objects: Maximum objects per image (at least one is always drawn).
        seed: Base seed; image ``i`` of a split depends only on (seed, split, i), so the same seed
            gives byte-identical files and changing ``num_train`` leaves the validation set unchanged.
        style: "flat" or "textured" (see ``render_scene``).

    Returns:
        The dataset root.

    Raises:
        FileExistsError: If ``root`` already holds images or annotations that were not written here.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    root = Path(root)
    params = _parameters(num_train, num_val, image_size, max_objects, seed, style)
    existing = [root / sub for sub in ("images", "annotations") if (root / sub).exists()]
    if existing and read_marker(root) is None:
        raise FileExistsError(
            f"{existing[0]} exists but {root / METADATA_FILE} does not, so this looks like a real dataset. "
            "Refusing to overwrite it: choose an empty folder for the synthetic data."
        )
    root.mkdir(parents=True, exist_ok=True)
    write_marker(root, params, complete=False)

    for folder, prefix, stream in _SPLITS:
        image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
        for d in (image_dir, label_dir):
            shutil.rmtree(d, ignore_errors=True)  # drop leftovers of an earlier, larger or interrupted run
            d.mkdir(parents=True)
        count = num_train if stream == 0 else num_val
        for i in range(1, count + 1):
            scene = render_scene(np.random.default_rng([seed, stream, i]), image_size, max_objects, style)
            stem = f"{prefix}_{i:08d}"
            bgr = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
            _encode(image_dir / f"{stem}.jpg", ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
            _encode(label_dir / f"{stem}.png", ".png", scene.semantic_mask(offset=1), [])

    write_marker(root, params, complete=True)
    return root
