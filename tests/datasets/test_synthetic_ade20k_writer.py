"""Tests for the synthetic ADE20K-layout writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitadapter.data.synthetic import (
    SHAPE_CLASSES,
    SYNTHETIC_CLASS_NAMES,
    is_synthetic_ade20k_complete,
    write_synthetic_ade20k,
)

SMALL = dict(num_train=4, num_val=2, image_size=64, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_names_and_labels(tmp_path: Path) -> None:
    root = write_synthetic_ade20k(tmp_path / "ade", **SMALL)
    images = sorted(p.name for p in (root / "images" / "training").iterdir())
    assert images == [f"ADE_train_{i:08d}.jpg" for i in range(1, 5)]
    labels = sorted(p.name for p in (root / "annotations" / "validation").iterdir())
    assert labels == ["ADE_val_00000001.png", "ADE_val_00000002.png"]
    for path in (root / "annotations" / "training").iterdir():
        label = Image.open(path)
        assert label.mode == "L" and label.size == (64, 64)
        values = np.unique(np.asarray(label))
        assert values.min() >= 0 and values.max() <= len(SHAPE_CLASSES)
        assert values.max() >= 1  # at least one object
    image = Image.open(root / "images" / "training" / "ADE_train_00000001.jpg")
    assert image.mode == "RGB" and image.size == (64, 64)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["complete"] is True and meta["class_names"] == list(SYNTHETIC_CLASS_NAMES)
    assert meta["num_train"] == 4 and meta["seed"] == 3
    assert is_synthetic_ade20k_complete(root, **SMALL)
    assert not is_synthetic_ade20k_complete(root, **{**SMALL, "seed": 4})


def test_deterministic_bytes_and_independent_streams(tmp_path: Path) -> None:
    a = _files(write_synthetic_ade20k(tmp_path / "a", **SMALL))
    b = _files(write_synthetic_ade20k(tmp_path / "b", **SMALL))
    assert a == b
    c = _files(write_synthetic_ade20k(tmp_path / "c", **{**SMALL, "num_train": 2}))
    val = {k: v for k, v in a.items() if "validation" in k}
    assert val == {k: v for k, v in c.items() if "validation" in k}  # val does not depend on num_train
    assert a["images/training/ADE_train_00000001.jpg"] != a["images/validation/ADE_val_00000001.jpg"]


def test_rewrite_replaces_stale_files_and_detects_interruption(tmp_path: Path) -> None:
    root = write_synthetic_ade20k(tmp_path / "ade", **SMALL)
    meta = json.loads((root / "synthetic.json").read_text())
    (root / "synthetic.json").write_text(json.dumps({**meta, "complete": False}))  # as if interrupted
    assert not is_synthetic_ade20k_complete(root, **SMALL)
    write_synthetic_ade20k(root, **{**SMALL, "num_train": 2})
    assert len(list((root / "images" / "training").iterdir())) == 2
    assert len(list((root / "annotations" / "training").iterdir())) == 2


def test_refuses_to_overwrite_real_data(tmp_path: Path) -> None:
    (tmp_path / "images" / "training").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="real dataset"):
        write_synthetic_ade20k(tmp_path, **SMALL)


def test_rejects_bad_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_train"):
        write_synthetic_ade20k(tmp_path, num_train=0, num_val=1)


def test_set_from_an_older_generator_is_not_reused(tmp_path: Path) -> None:
    root = write_synthetic_ade20k(tmp_path / "ade", **SMALL)
    assert is_synthetic_ade20k_complete(root, **SMALL)
    meta = json.loads((root / "synthetic.json").read_text())
    (root / "synthetic.json").write_text(json.dumps({**meta, "scene_version": meta["scene_version"] - 1}))
    assert not is_synthetic_ade20k_complete(root, **SMALL)


def test_style_is_part_of_the_set_identity(tmp_path: Path) -> None:
    flat = write_synthetic_ade20k(tmp_path / "flat", **SMALL)
    textured = write_synthetic_ade20k(tmp_path / "textured", **SMALL, style="textured")
    assert "style" not in json.loads((flat / "synthetic.json").read_text())  # flat sets keep their old marker
    assert json.loads((textured / "synthetic.json").read_text())["style"] == "textured"
    assert is_synthetic_ade20k_complete(textured, **SMALL, style="textured")
    assert not is_synthetic_ade20k_complete(textured, **SMALL)
    labels = sorted((flat / "annotations").rglob("*.png"))
    assert all(p.read_bytes() == (textured / p.relative_to(flat)).read_bytes() for p in labels)  # same shapes
    assert all(p.read_bytes() != (textured / p.relative_to(flat)).read_bytes() for p in (flat / "images").rglob("*.jpg"))
