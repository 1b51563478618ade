"""Tests for the synthetic COCO-layout writer and its scripts (no network)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from vitadapter.data.coco_dataset import COCODetectionDataset
from vitadapter.data.synthetic.coco_writer import (
    SYNTHETIC_COCO_CATEGORY_IDS,
    is_synthetic_coco_complete,
    mask_to_polygons,
    write_synthetic_coco,
)
from vitadapter.data.synthetic.shapes import SHAPE_CLASSES, render_scene

SMALL = dict(num_train=4, num_val=2, image_size=64, seed=3)
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _decode(polygons: list[list[float]], h: int, w: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


def test_layout_and_json(tmp_path: Path) -> None:
    root = write_synthetic_coco(tmp_path / "coco", **SMALL)
    assert sorted(p.name for p in (root / "train2017").iterdir()) == [f"{i:012d}.jpg" for i in range(1, 5)]
    assert sorted(p.name for p in (root / "val2017").iterdir()) == ["000000000001.jpg", "000000000002.jpg"]
    data = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    assert data["images"][0] == {"id": 1, "file_name": "000000000001.jpg", "width": 64, "height": 64}
    assert [c["id"] for c in data["categories"]] == list(SYNTHETIC_COCO_CATEGORY_IDS) == [1, 2, 3, 5, 7, 8, 10, 11]
    assert [c["name"] for c in data["categories"]] == list(SHAPE_CLASSES)
    assert {c["supercategory"] for c in data["categories"]} == {"shape"}
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    for ann in data["annotations"]:
        assert ann["iscrowd"] == 0 and ann["category_id"] in SYNTHETIC_COCO_CATEGORY_IDS
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann["segmentation"])
        mask = _decode(ann["segmentation"], 64, 64)
        ys, xs = np.nonzero(mask)
        assert ann["area"] == mask.sum()
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    assert Image.open(root / "val2017" / "000000000001.jpg").mode == "RGB"
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["complete"] is True and meta["format"] == "coco"
    ds = COCODetectionDataset(root, "train2017")
    assert ds.category_ids == list(SYNTHETIC_COCO_CATEGORY_IDS) and len(ds) == 4


def test_polygons_decode_to_the_visible_masks(tmp_path: Path) -> None:
    root = write_synthetic_coco(tmp_path / "coco", **SMALL)
    coco = COCO(str(root / "annotations" / "instances_val2017.json"))
    for image_id in (1, 2):
        scene = render_scene(np.random.default_rng([SMALL["seed"], 1, image_id]), 64, 4)  # val stream, default max_objects
        anns = coco.imgToAnns[image_id]
        assert len(anns) == len(scene.instances)
        for ann, inst in zip(anns, scene.instances):
            assert ann["category_id"] == SYNTHETIC_COCO_CATEGORY_IDS[inst.class_index]
            decoded = coco.annToMask(ann).astype(bool)
            iou = (decoded & inst.mask).sum() / (decoded | inst.mask).sum()
            assert iou > 0.9


def test_mask_to_polygons_parts_and_holes() -> None:
    yy, xx = np.mgrid[:40, :40]
    ring = ((yy - 15) ** 2 + (xx - 15) ** 2 <= 12**2) & ((yy - 15) ** 2 + (xx - 15) ** 2 > 5**2)
    mask = ring.copy()
    mask[33:37, 30:38] = True  # a second, separate part
    mask[39, 0] = True  # a single pixel is still a 4-corner polygon
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3
    assert np.array_equal(_decode(polygons, 40, 40), mask)  # exact, hole included
    assert mask_to_polygons(np.zeros((8, 8), dtype=bool)) == []


def test_deterministic_bytes_and_skip_when_complete(tmp_path: Path) -> None:
    a = _files(write_synthetic_coco(tmp_path / "a", **SMALL))
    assert a == _files(write_synthetic_coco(tmp_path / "b", **SMALL))
    c = _files(write_synthetic_coco(tmp_path / "c", **{**SMALL, "num_train": 2}))
    assert {k: v for k, v in a.items() if "val2017" in k} == {k: v for k, v in c.items() if "val2017" in k}
    assert is_synthetic_coco_complete(tmp_path / "a", **SMALL)
    assert not is_synthetic_coco_complete(tmp_path / "a", **{**SMALL, "seed": 4})
    marker = tmp_path / "a" / "synthetic.json"
    stamp = marker.stat().st_mtime_ns
    write_synthetic_coco(tmp_path / "a", **SMALL)
    assert marker.stat().st_mtime_ns == stamp  # complete with the same parameters: nothing rewritten


def test_interrupted_write_is_redone(tmp_path: Path) -> None:
    root = write_synthetic_coco(tmp_path / "coco", **SMALL)
    meta = json.loads((root / "synthetic.json").read_text())
    (root / "synthetic.json").write_text(json.dumps({**meta, "complete": False}))
    assert not is_synthetic_coco_complete(root, **SMALL)
    smaller = {**SMALL, "num_train": 2}
    write_synthetic_coco(root, **smaller)
    assert len(list((root / "train2017").iterdir())) == 2 and is_synthetic_coco_complete(root, **smaller)


def test_refuses_real_data_and_bad_counts(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    with pytest.raises(FileExistsError, match="real dataset"):
        write_synthetic_coco(tmp_path, **SMALL)
    with pytest.raises(ValueError, match="num_train"):
        write_synthetic_coco(tmp_path / "new", num_train=0)


def _load_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_synthetic_coco", SCRIPTS / "make_synthetic_coco.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_synthetic_coco_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = _load_cli()
    args = [str(tmp_path / "s"), "--num-train", "2", "--num-val", "1", "--image-size", "32"]
    assert cli.main(args) == 0 and len(list((tmp_path / "s" / "train2017").glob("*.jpg"))) == 2
    assert cli.main(args) == 0 and "nothing to do" in capsys.readouterr().out
    (tmp_path / "real" / "train2017").mkdir(parents=True)
    assert cli.main([str(tmp_path / "real")]) == 1 and "real dataset" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_download_coco_usage_and_existing_data(tmp_path: Path) -> None:
    script = str(SCRIPTS / "download_coco.sh")
    usage = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in usage.stdout and "data/coco" in usage.stdout and "train2017.zip" in usage.stdout
    assert subprocess.run(["bash", script, "a", "b"], capture_output=True).returncode == 2
    for sub in ("train2017", "val2017", "annotations"):
        (tmp_path / sub).mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    done = subprocess.run(["bash", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert done.stdout.count("skipping") == 3
