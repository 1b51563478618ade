"""Tests for the random shapes scene generator."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vitadapter.data.synthetic.shapes import SHAPE_CLASSES, Scene, render_scene


def test_scene_format_and_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        scene = render_scene(rng, 128)
        assert isinstance(scene, Scene)
        assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.instances) <= 6
        union = np.zeros((128, 128), dtype=np.int32)
        for inst in scene.instances:
            assert 0 <= inst.class_index < len(SHAPE_CLASSES)
            assert inst.mask.dtype == bool and inst.mask.shape == (128, 128)
            assert inst.mask.sum() > 30  # every object keeps a visible part
            union += inst.mask
        assert union.max() == 1  # visible masks never overlap


def test_semantic_mask_uses_ade_convention() -> None:
    scene = render_scene(np.random.default_rng(3), 64)
    labels = scene.semantic_mask()
    assert labels.dtype == np.uint8
    for inst in scene.instances:
        assert np.all(labels[inst.mask] == inst.class_index + 1)
    assert set(np.unique(labels)) <= set(range(len(SHAPE_CLASSES) + 1))


def test_deterministic_for_a_seed() -> None:
    a = render_scene(np.random.default_rng(7), (96, 80), max_objects=4)
    b = render_scene(np.random.default_rng(7), (96, 80), max_objects=4)
    assert a.image.shape == (96, 80, 3)
    assert np.array_equal(a.image, b.image)
    assert [i.class_index for i in a.instances] == [i.class_index for i in b.instances]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.instances, b.instances, strict=True))


def test_all_classes_any_colour_and_occlusion() -> None:
    rng = np.random.default_rng(1)
    seen: set[int] = set()
    touching = 0
    colours: dict[int, list[np.ndarray]] = {}
    for _ in range(60):
        scene = render_scene(rng, 128)
        for k, inst in enumerate(scene.instances):
            seen.add(inst.class_index)
            colours.setdefault(inst.class_index, []).append(scene.image[inst.mask].mean(axis=0))
            grown = cv2.dilate(inst.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            # objects in contact: in these scenes that almost always means one hides part of the other
            touching += any((grown & other.mask).any() for j, other in enumerate(scene.instances) if j != k)
    assert seen == set(range(len(SHAPE_CLASSES)))
    assert touching >= 20
    for means in colours.values():  # colour varies widely within every class
        assert np.std(np.stack(means), axis=0).mean() > 25


def test_objects_scale_with_image_size() -> None:
    small = [m.mask.sum() for s in range(20) for m in render_scene(np.random.default_rng(s), 64).instances]
    large = [m.mask.sum() for s in range(20) for m in render_scene(np.random.default_rng(s), 256).instances]
    assert np.median(large) > 8 * np.median(small)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_objects"):
        render_scene(np.random.default_rng(0), 64, max_objects=0)
    with pytest.raises(ValueError, match="image_size"):
        render_scene(np.random.default_rng(0), 8)


def test_textured_style_keeps_the_shapes_and_changes_their_look() -> None:
    for index in range(5):
        flat = render_scene(np.random.default_rng([0, index]), 96, style="flat")
        textured = render_scene(np.random.default_rng([0, index]), 96, style="textured")
        assert [i.class_index for i in textured.instances] == [i.class_index for i in flat.instances]
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(flat.instances, textured.instances))
        objects = np.any([i.mask for i in flat.instances], axis=0)
        difference = np.abs(flat.image.astype(float) - textured.image.astype(float))
        assert difference[~objects].mean() > 30  # backgrounds are inverted (noise and all)
        # one-colour shapes (not the striped/checkered ones) blend into a smooth colour field: no longer one colour
        one_colour = [i.mask for i in flat.instances if not SHAPE_CLASSES[i.class_index].endswith("rectangle")]
        spread = [np.mean([scene.image[mask].astype(float).std(axis=0).max() for mask in one_colour])
                  for scene in (flat, textured)]
        assert spread[1] > spread[0] + 8  # flat: pixel noise only (~3-10)
    with pytest.raises(ValueError, match=r"style='neon': choose from \['flat', 'textured'\]"):
        render_scene(np.random.default_rng(0), 96, style="neon")
