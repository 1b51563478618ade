"""The synthetic panoptic set: the exact COCO panoptic layout, scene content, determinism and its script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitadapter.data.coco_panoptic_format import rgb_to_id
from vitadapter.data.synthetic.panoptic_scenes import (
    PANOPTIC_CLASSES,
    STUFF_CLASSES,
    THING_CLASSES,
    render_panoptic_scene,
)
from vitadapter.data.synthetic.panoptic_writer import (
    SYNTHETIC_PANOPTIC_CATEGORY_IDS,
    is_synthetic_coco_panoptic_complete,
    write_synthetic_coco_panoptic,
)

SMALL = dict(num_train=3, num_val=30, image_size=64, seed=2)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_synthetic_coco_panoptic.py"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_coco_panoptic(tmp_path_factory.mktemp("synthetic") / "pan", **SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_json_and_pngs(root: Path) -> None:
    assert sorted(p.name for p in (root / "train2017").iterdir()) == [f"{i:012d}.jpg" for i in (1, 2, 3)]
    png_dir = root / "annotations" / "panoptic_val2017"
    assert sorted(p.name for p in png_dir.iterdir()) == [f"{i:012d}.png" for i in range(1, 31)]
    document = json.loads((root / "annotations" / "panoptic_val2017.json").read_text())
    assert [c["id"] for c in document["categories"]] == list(SYNTHETIC_PANOPTIC_CATEGORY_IDS)
    assert [c["name"] for c in document["categories"]] == list(PANOPTIC_CLASSES)
    assert [c["isthing"] for c in document["categories"]] == [1] * len(THING_CLASSES) + [0] * len(STUFF_CLASSES)
    assert document["images"][0] == {"id": 1, "file_name": "000000000001.jpg", "width": 64, "height": 64}
    crowds = void_images = thingless = 0
    for annotation in document["annotations"]:
        ids = rgb_to_id(np.asarray(Image.open(png_dir / annotation["file_name"])))
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in annotation["segments_info"]}
        for segment in annotation["segments_info"]:
            ys, xs = np.nonzero(ids == segment["id"])
            assert segment["area"] == len(ys) and segment["id"] // 1000 == segment["category_id"]
            assert segment["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        stuff = [s for s in annotation["segments_info"] if s["category_id"] >= 92]
        assert stuff and len({s["category_id"] for s in stuff}) == len(stuff)  # one segment per stuff class
        crowds += sum(s["iscrowd"] for s in annotation["segments_info"])
        void_images += bool((ids == 0).any())
        thingless += not any(s["category_id"] < 92 for s in annotation["segments_info"])
    assert crowds >= 1 and void_images >= 5 and thingless >= 1
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["complete"] is True and meta["format"] == "coco_panoptic"
    assert is_synthetic_coco_panoptic_complete(root, **SMALL)
    assert not is_synthetic_coco_panoptic_complete(root, **{**SMALL, "seed": 3})


def test_deterministic_and_validation_independent_of_training_size(root: Path, tmp_path: Path) -> None:
    other = write_synthetic_coco_panoptic(tmp_path / "other", **{**SMALL, "num_train": 1})
    first, second = _files(root), _files(other)
    val = [k for k in first if "val2017" in k]
    assert val and all(first[k] == second[k] for k in val)
    assert first["train2017/000000000001.jpg"] == second["train2017/000000000001.jpg"]


def test_scene_segments_are_disjoint_and_touch() -> None:
    touching = 0
    for index in range(40):
        scene = render_panoptic_scene(np.random.default_rng([1, index]), (48, 80))
        assert scene.image.shape == (48, 80, 3) and scene.image.dtype == np.uint8
        stack = np.stack([s.mask for s in scene.segments])
        assert stack.sum(0).max() <= 1 and stack.any(axis=(1, 2)).all()
        things = [s.mask for s in scene.segments if s.class_index < len(THING_CLASSES)]
        grown = [np.pad(m, 1)[:-2, 1:-1] | np.pad(m, 1)[2:, 1:-1] | np.pad(m, 1)[1:-1, :-2] | m for m in things]
        touching += any((g & o).any() for i, g in enumerate(grown) for j, o in enumerate(things) if i != j)
    assert touching >= 5


def test_refuses_a_real_dataset_and_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    (tmp_path / "coco" / "annotations" / "panoptic_val2017.json").write_text("{}")
    with pytest.raises(FileExistsError, match="looks like a real dataset"):
        write_synthetic_coco_panoptic(tmp_path / "coco", **SMALL)
    with pytest.raises(ValueError, match="num_train and num_val must be >= 1"):
        write_synthetic_coco_panoptic(tmp_path / "x", num_train=0)


def test_script_writes_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("make_synthetic_coco_panoptic", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = [str(tmp_path / "pan"), "--num-train", "2", "--num-val", "1", "--image-size", "32"]
    assert script.main(args) == 0
    assert "wrote 2 + 1 images of 32px" in capsys.readouterr().out
    assert script.main(args) == 0
    assert "already holds this synthetic set" in capsys.readouterr().out
