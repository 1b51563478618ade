"""The upstream pretraining scenes and their writer: classes apart from the demos', labels that match the pixels."""

from __future__ import annotations

import colorsys
import json
import os

import cv2
import numpy as np
import pytest

from vitadapter.data.synthetic.shapes import SHAPE_CLASSES
from vitadapter.data.synthetic.upstream_shapes import (
    UPSTREAM_BACKGROUNDS,
    UPSTREAM_COLOURS,
    UPSTREAM_SHAPES,
    UPSTREAM_TEXTURES,
    label_factors,
    object_label,
    render_upstream_scene,
    upstream_class_names,
)
from vitadapter.data.synthetic.upstream_writer import is_upstream_set_complete, write_upstream_set
from vitadapter.pretrain import UpstreamDataModule, UpstreamDataset


def test_no_demo_class_is_drawn_and_the_class_list_is_the_product() -> None:
    assert not set(UPSTREAM_SHAPES) & set(SHAPE_CLASSES)
    assert not {"stripes", "striped", "checkered", "checkers"} & set(UPSTREAM_TEXTURES)
    names = upstream_class_names()
    assert len(names) == len(set(names)) == 4 + 16 * 8 * 8 == 1028
    assert not any(demo in name.split("/") for name in names for demo in SHAPE_CLASSES)
    assert names[object_label(2, 3, 4)] == f"{UPSTREAM_SHAPES[2]}/{UPSTREAM_TEXTURES[3]}/{UPSTREAM_COLOURS[4][0]}"


def test_label_factors_invert_object_label() -> None:
    labels = np.array([[object_label(15, 7, 7), 0], [object_label(0, 0, 0), 3]])
    factors = label_factors(labels)
    assert factors["shape"].tolist() == [[15, -1], [0, -1]]
    assert factors["texture"].tolist() == [[7, -1], [0, -1]]
    assert factors["colour"].tolist() == [[7, -1], [0, -1]]
    assert factors["background"].tolist() == [[-1, 0], [-1, 3]]
    with pytest.raises(ValueError, match=r"\[0, 1028\)"):
        label_factors(np.array([1028]))


def test_same_generator_same_scene_and_labels_cover_the_objects() -> None:
    a = render_upstream_scene(np.random.default_rng(5), 96)
    b = render_upstream_scene(np.random.default_rng(5), 96)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.image.shape == (96, 96, 3) and a.image.dtype == np.uint8 and a.labels.dtype == np.uint16
    backgrounds = np.unique(a.labels[a.labels < len(UPSTREAM_BACKGROUNDS)])
    assert len(backgrounds) <= 1  # one background kind per image


def test_empty_scene_is_one_background_kind_and_tiny_images_render() -> None:
    empty = render_upstream_scene(np.random.default_rng(1), (20, 33), max_objects=0)
    assert empty.image.shape == (20, 33, 3) and len(np.unique(empty.labels)) == 1
    assert int(empty.labels[0, 0]) < len(UPSTREAM_BACKGROUNDS)
    tiny = render_upstream_scene(np.random.default_rng(2), 16, max_objects=6)
    assert tiny.labels.max() < len(upstream_class_names())
    with pytest.raises(ValueError, match="at least 16"):
        render_upstream_scene(np.random.default_rng(0), 8)


def test_flat_objects_have_the_hue_of_their_colour_class() -> None:
    """A flat object's visible pixels average to its named hue (within the drawn jitter, the noise and the JPEG-free
    rendering): the colour factor is what the pixels show."""
    checked = 0
    for seed in range(60):
        scene = render_upstream_scene(np.random.default_rng(seed), 128)
        factors = label_factors(scene.labels)
        for label in np.unique(scene.labels[factors["texture"] == UPSTREAM_TEXTURES.index("flat")]):
            pixels = scene.image[scene.labels == label].astype(np.float64)
            if len(pixels) < 80:
                continue
            hue = colorsys.rgb_to_hsv(*(pixels.mean(axis=0) / 255.0))[0] * 360.0
            named = UPSTREAM_COLOURS[int(label_factors(np.array([label]))["colour"][0])][1]
            assert min(abs(hue - named), 360 - abs(hue - named)) < 20.0
            checked += 1
    assert checked >= 10


def test_writer_layout_labels_and_reuse(tmp_path) -> None:
    root = write_upstream_set(tmp_path / "up", num_train=3, num_val=2, image_size=40, max_objects=3, seed=7)
    assert is_upstream_set_complete(root, 3, 2, 40, 3, 7) and not is_upstream_set_complete(root, 4, 2, 40, 3, 7)
    label_file = root / "annotations" / "training" / "upstream_train_00000002.png"
    labels = cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED)
    expected = render_upstream_scene(np.random.default_rng([7, 0, 2]), 40, 3).labels
    assert labels.dtype == np.uint16 and np.array_equal(labels, expected)
    assert sorted(p.name for p in (root / "images" / "validation").iterdir()) == [
        "upstream_val_00000001.jpg", "upstream_val_00000002.jpg"]
    assert json.loads((root / "synthetic.json").read_text())["class_names"] == upstream_class_names()
    before = label_file.stat().st_mtime_ns
    os.utime(label_file, ns=(before - 10**9, before - 10**9))
    write_upstream_set(root, num_train=3, num_val=2, image_size=40, max_objects=3, seed=7)  # complete: kept
    assert label_file.stat().st_mtime_ns == before - 10**9
    dataset = UpstreamDataset(root, "validation", mean=(0.5,) * 3, std=(0.5,) * 3)
    sample = dataset[1]
    assert sample["image"].shape == (3, 40, 40) and sample["labels"].shape == (40, 40)
    assert -1.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0


def test_a_bad_label_file_and_a_bad_key_are_named(tmp_path) -> None:
    root = write_upstream_set(tmp_path / "up", num_train=2, num_val=1, image_size=32)
    label_file = root / "annotations" / "training" / "upstream_train_00000002.png"
    cv2.imwrite(str(label_file), np.zeros((32, 32), np.uint8))  # 8-bit: not an upstream label map
    dataset = UpstreamDataset(root, "training", (0.5,) * 3, (0.5,) * 3)
    assert dataset[0]["labels"].shape == (32, 32)
    with pytest.raises(ValueError, match="upstream_train_00000002.png.*uint16"):
        dataset[1]
    with pytest.raises(ValueError, match=r"unknown data.synthetic key\(s\) \['size'\]"):
        UpstreamDataModule(str(root), synthetic={"num_train": 2, "size": 32})


def test_writer_refuses_a_folder_holding_other_data(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(FileExistsError, match="Refusing to overwrite"):
        write_upstream_set(tmp_path, num_train=1, num_val=1, image_size=32)
    with pytest.raises(FileNotFoundError, match="no upstream images"):
        UpstreamDataset(tmp_path, "training", (0.5,) * 3, (0.5,) * 3)
