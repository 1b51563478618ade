"""Write a synthetic depth dataset in NYU Depth v2's layout as mmsegmentation's converter writes it.

The result is read by the same ``DepthDataModule`` configuration as the real data (``data=nyu``)::

    root/
      images/train/synthetic_train_00001.jpg ...        RGB, JPEG quality 95
      annotations/train/synthetic_train_00001.png ...   uint16 depth in millimetres, 0 = no depth
      images/test/synthetic_test_00001.jpg ...
      annotations/test/synthetic_test_00001.png ...
      synthetic.json                                    parameters, completion flag

Scenes are ``render_depth_scene``'s: floor, wall and shapes seen by a camera with NYU's field of view.
``synthetic.json`` is written first with ``"complete": false`` and rewritten with ``true`` at the end, so
an interrupted run is recognised (and rewritten) and a folder holding real data is never overwritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vitadapter.data.synthetic.depth_scenes import DEPTH_SCENE_VERSION, render_depth_scene
from vitadapter.data.synthetic.marker import METADATA_FILE, marker_complete, read_marker, write_marker

_FORMAT = "nyu"
_FORMAT_VERSION = 1
_JPEG_QUALITY = 95
DEPTH_SCALE = 1000.0  # PNG units per metre: millimetres, as NYU's
# (split folder, file-name prefix, stream id): train and test draw from independent seeded streams.
_SPLITS = (("train", "synthetic_train", 0), ("test", "synthetic_test", 1))


def _parameters(num_train: int, num_val: int, height: int, width: int, max_objects: int, seed: int) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "scene_version": DEPTH_SCENE_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "height": int(height),
        "width": int(width),
        "max_objects": int(max_objects),
        "seed": int(seed),
        "depth_scale": DEPTH_SCALE,
    }


def is_synthetic_nyu_complete(
    root: str | Path,
    num_train: int = 1000,
    num_val: int = 100,
    height: int = 120,
    width: int = 160,
    max_objects: int = 3,
    seed: int = 0,
) -> bool:
    """Tell whether ``root`` already holds a finished synthetic depth set written with these parameters.

    Args:
        root: Dataset root.
        num_train: Number of training images.
        num_val: Number of validation (``test``) images.
        height: Image height in pixels.
        width: Image width in pixels.
        max_objects: Maximum shapes per image.
        seed: Base random seed.

    Returns:
        True if ``synthetic.json`` records a complete write with exactly these parameters.
    """
    return marker_complete(Path(root), _parameters(num_train, num_val, height, width, max_objects, seed))


def _encode(path: Path, ext: str, array: np.ndarray, params: list[int]) -> None:
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def write_synthetic_nyu(
    root: str | Path,
    num_train: int = 1000,
    num_val: int = 100,
    height: int = 120,
    width: int = 160,
    max_objects: int = 3,
    seed: int = 0,
) -> Path:
    """Write a synthetic depth dataset in the NYU layout (always rewrites the four split folders).

    Args:
        root: Dataset root to create or refresh.
        num_train: Number of training images (>= 1).
        num_val: Number of validation images (>= 1), written as NYU's ``test`` split.
        height: Image height in pixels (NYU's aspect ratio is 3:4, e.g. 120 x 160).
        width: Image width in pixels.
        max_objects: Maximum shapes per image (0 to this many are drawn).
        seed: Base seed; image ``i`` of a split depends only on (seed, split, i), so the same seed gives
            byte-identical files and changing ``num_train`` leaves the validation set unchanged.

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
    params = _parameters(num_train, num_val, height, width, max_objects, seed)
    existing = [root / sub for sub in ("images", "annotations") if (root / sub).exists()]
    if existing and read_marker(root) is None:
        raise FileExistsError(
            f"{existing[0]} exists but {root / METADATA_FILE} does not, so this looks like a real dataset. "
            "Refusing to overwrite it: choose an empty folder for the synthetic data."
        )
    root.mkdir(parents=True, exist_ok=True)
    write_marker(root, params, complete=False)

    for folder, prefix, stream in _SPLITS:
        image_dir, depth_dir = root / "images" / folder, root / "annotations" / folder
        for d in (image_dir, depth_dir):
            shutil.rmtree(d, ignore_errors=True)  # drop leftovers of an earlier, larger or interrupted run
            d.mkdir(parents=True)
        for i in range(1, (num_train if stream == 0 else num_val) + 1):
            scene = render_depth_scene(np.random.default_rng([seed, stream, i]), height, width, max_objects)
            stem = f"{prefix}_{i:05d}"
            bgr = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
            _encode(image_dir / f"{stem}.jpg", ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
            millimetres = np.round(scene.depth.astype(np.float64) * DEPTH_SCALE).astype(np.uint16)
            _encode(depth_dir / f"{stem}.png", ".png", millimetres, [])

    write_marker(root, params, complete=True)
    return root
