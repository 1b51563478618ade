"""The synthetic depth set: NYU's mmseg layout exactly, the same bytes for a seed, depths in range with a few holes,
geometry that a camera over a floor gives, and the script that writes it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitadapter.data.synthetic.depth_scenes import render_depth_scene
from vitadapter.data.synthetic.depth_writer import is_synthetic_nyu_complete, write_synthetic_nyu

SMALL = dict(num_train=3, num_val=2, height=60, width=80, max_objects=3, seed=5)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_synthetic_nyu.py"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_exact_layout_uint16_millimetres_in_range_and_marker(tmp_path: Path) -> None:
    root = write_synthetic_nyu(tmp_path / "nyu", **SMALL)
    assert sorted(_files(root)) == [
        "annotations/test/synthetic_test_00001.png", "annotations/test/synthetic_test_00002.png",
        *[f"annotations/train/synthetic_train_{i:05d}.png" for i in (1, 2, 3)],
        "images/test/synthetic_test_00001.jpg", "images/test/synthetic_test_00002.jpg",
        *[f"images/train/synthetic_train_{i:05d}.jpg" for i in (1, 2, 3)],
        "synthetic.json",
    ]
    for path in (root / "annotations").rglob("*.png"):
        depth = Image.open(path)
        assert depth.mode == "I;16" and depth.size == (80, 60)
        mm = np.array(depth)
        assert 1000 <= mm[mm > 0].min() and mm.max() <= 9500  # metres 1 to 9.5, below max_depth 10
        image = Image.open(root / "images" / path.parent.name / f"{path.stem}.jpg")
        assert image.mode == "RGB" and image.size == (80, 60)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["complete"] is True and meta["depth_scale"] == 1000.0 and meta["num_val"] == 2
    assert is_synthetic_nyu_complete(root, **SMALL) and not is_synthetic_nyu_complete(root, **{**SMALL, "seed": 6})


def test_deterministic_bytes_and_independent_streams(tmp_path: Path) -> None:
    a = _files(write_synthetic_nyu(tmp_path / "a", **SMALL))
    assert a == _files(write_synthetic_nyu(tmp_path / "b", **SMALL))
    c = _files(write_synthetic_nyu(tmp_path / "c", **{**SMALL, "num_train": 1}))
    assert {k: v for k, v in a.items() if "test" in k} == {k: v for k, v in c.items() if "test" in k}
    assert a["annotations/train/synthetic_train_00001.png"] != a["annotations/train/synthetic_train_00002.png"]


def test_refuses_to_overwrite_real_data(tmp_path: Path) -> None:
    (tmp_path / "real" / "images").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="looks like a real dataset"):
        write_synthetic_nyu(tmp_path / "real", **SMALL)


def test_floor_and_wall_depth_depends_on_the_row_only_and_peaks_where_they_meet() -> None:
    """Without shapes the camera sees a wall above a floor: one depth per row, farthest where the two meet."""
    for i in range(4):
        depth = render_depth_scene(np.random.default_rng([0, 9, i]), 90, 120, max_objects=0).depth
        rows = np.where(depth > 0, depth, np.nan)
        assert np.allclose(np.nanmax(rows, axis=1), np.nanmin(rows, axis=1), atol=1e-6)
        per_row = np.nanmax(rows, axis=1)
        meet = int(np.argmax(per_row))
        assert 0 < meet < 89 and per_row[meet] < 9.5
        assert np.all(np.diff(per_row[: meet + 1]) > 0) and np.all(np.diff(per_row[meet:]) < 0)


def test_shapes_stand_on_the_floor_with_its_depth_and_holes_are_zero() -> None:
    """A shape faces the camera at the depth of the floor under its base: nearer than all it hides."""
    shapes = holes = 0
    for i in range(10):
        scene = render_depth_scene(np.random.default_rng([1, 0, i]), 120, 160, max_objects=3)
        bare = render_depth_scene(np.random.default_rng([1, 0, i]), 120, 160, max_objects=0)  # same floor and wall
        holes += int((scene.depth == 0).any())
        hidden = (scene.depth != bare.depth) & (scene.depth > 0) & (bare.depth > 0)
        if not hidden.any():
            continue
        shapes += 1
        assert np.all(scene.depth[hidden] < bare.depth[hidden] * 1.01)  # 1 %: the base row itself
        nearest = scene.depth[hidden].min()  # nothing stands in front of the nearest shape
        base = np.nonzero((scene.depth == nearest).any(axis=1))[0].max()
        floor = np.median(bare.depth[base][bare.depth[base] > 0])
        assert nearest == pytest.approx(floor, rel=0.03)
    assert shapes >= 3 and holes >= 3


def test_make_synthetic_nyu_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("make_synthetic_nyu", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = [str(tmp_path / "s"), "--num-train", "2", "--num-val", "1", "--height", "30", "--width", "40"]
    assert script.main(args) == 0 and "data=synthetic_depth" in capsys.readouterr().out
    assert len(list((tmp_path / "s" / "images" / "train").glob("*.jpg"))) == 2
    assert script.main(args) == 0 and "already holds this synthetic set" in capsys.readouterr().out
