"""COCOPanopticDataset on a hand-made split with the real data's quirks (odd size, grayscale, an image without
segments, crowd, ids over 256², category ids with gaps) and on bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.datasets.panoptic_layouts import GRASS_ID, quirky_images, write_panoptic_fixture
from vitadapter.data.bad_samples import SKIPPED, BadSampleError
from vitadapter.data.coco_panoptic_dataset import COCOPanopticDataset
from vitadapter.data.coco_panoptic_format import id_to_rgb
from vitadapter.data.coco_panoptic_transforms import build_panoptic_train_transform, build_panoptic_val_transform

CONTIGUOUS = {2: 0, 7: 1, 150: 2}


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_panoptic_fixture(tmp_path_factory.mktemp("panoptic"))


def _copy(fixture_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fixture_root, tmp_path / "copy"))


def _json(root: Path) -> dict:
    return json.loads((root / "annotations" / "panoptic_val2017.json").read_text())


def _rewrite(root: Path, document: dict) -> None:
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(document))


def test_label_map_and_evaluation_samples_at_the_original_size(fixture_root: Path) -> None:
    dataset = COCOPanopticDataset(fixture_root, "val2017", build_panoptic_val_transform(32))
    assert dataset.class_names == ["cat", "dog", "grass"] and dataset.isthing == [True, True, False]
    assert dataset.contiguous_to_category_id == {0: 2, 1: 7, 2: 150} and dataset.palette is None
    assert dataset.image_ids == [11, 12, 13]
    for index, item in enumerate(quirky_images()):
        sample = dataset[index]
        h, w = item["hw"]
        assert torch.equal(sample["panoptic"], torch.from_numpy(item["ids"])) and sample["orig_size"] == (h, w)
        assert sample["image"].shape == (3, round(h * 32 / max(h, w)), round(w * 32 / max(h, w)))
        assert sample["scale"] == pytest.approx(32 / max(h, w))
        assert sample["segments_info"] == [
            {"id": s["id"], "category_id": CONTIGUOUS[s["category_id"]], "iscrowd": s["iscrowd"],
             "isthing": s["category_id"] != 150} for s in item["segments"]]
        stem = f"{item['id']:012d}"
        assert (sample["image_id"], sample["file_name"], sample["name"]) == (item["id"], f"{stem}.png", stem)


def test_training_samples_without_a_transform_are_the_segments(fixture_root: Path) -> None:
    dataset = COCOPanopticDataset(fixture_root, "val2017", training=True)
    odd = dataset[0]
    item = quirky_images()[0]
    assert odd["image"].shape == (3, 37, 53) and odd["image"].dtype == torch.float32
    assert torch.equal(odd["masks"], torch.stack([torch.from_numpy(item["ids"] == s["id"]) for s in item["segments"]]))
    assert odd["labels"].tolist() == [2, 0, 0, 1] and odd["iscrowd"].tolist() == [False, False, True, False]
    gray = dataset[1]
    assert gray["image"].shape == (3, 20, 30) and gray["masks"].shape == (1, 20, 30) and gray["labels"].tolist() == [2]
    empty = dataset[2]
    assert empty["masks"].shape == (0, 16, 16) and empty["masks"].dtype == torch.bool
    assert empty["labels"].shape == (0,) and empty["labels"].dtype == torch.int64 and empty["iscrowd"].shape == (0,)


def test_training_transform_moves_masks_with_the_image(fixture_root: Path) -> None:
    # no rescale (image_size = the longer side, factor 1), no crop: each mask is the original or its mirror, padded
    transform = build_panoptic_train_transform(53, scale_range=(1.0, 1.0), mean=(0, 0, 0), std=(1 / 255,) * 3)
    dataset = COCOPanopticDataset(fixture_root, "val2017", transform, training=True)
    item = quirky_images()[0]
    raw = dataset.load_image(0).astype(np.float32)
    flips = set()
    for seed in range(6):
        sample = dataset[(0, seed)]
        assert sample["masks"].shape == (4, 53, 53) and sample["image"].shape == (3, 53, 53)
        flipped = not np.allclose(sample["image"][:, :37].permute(1, 2, 0).numpy(), raw)
        flips.add(flipped)
        expected = np.stack([item["ids"] == s["id"] for s in item["segments"]])
        expected = expected[:, :, ::-1] if flipped else expected
        assert np.array_equal(sample["masks"][:, :37].numpy(), expected) and not sample["masks"][:, 37:].any()
        assert np.allclose(sample["image"][:, :37].permute(1, 2, 0).numpy(), raw[:, ::-1] if flipped else raw)
    assert flips == {True, False}


def test_large_scale_jitter_drops_cropped_segments_and_keeps_labels_aligned(fixture_root: Path) -> None:
    transform = build_panoptic_train_transform(24, scale_range=(1.5, 2.0))  # crops a quarter of the image or less
    dataset = COCOPanopticDataset(fixture_root, "val2017", transform, training=True)
    counts = set()
    for seed in range(12):
        sample = dataset[(0, seed)]
        masks, labels = sample["masks"], sample["labels"]
        assert masks.shape[1:] == (24, 24) and len(labels) == len(masks) == len(sample["iscrowd"])
        assert masks.flatten(1).any(1).all() and masks.sum(0).max() <= 1  # every kept mask non-empty, disjoint
        # grass (label 2) is the only stuff and the only segment below row 20 of 37
        assert set(labels.tolist()) <= {0, 1, 2} and sample["iscrowd"].sum() <= 1
        counts.add(len(labels))
    assert min(counts) < 4  # some segment was cropped away in some sample


def test_bad_png_content_is_a_bad_sample_naming_the_png(fixture_root: Path, tmp_path: Path) -> None:
    root = _copy(fixture_root, tmp_path)
    png = root / "annotations" / "panoptic_val2017" / "000000000012.png"
    ids = np.full((20, 30), GRASS_ID, dtype=np.int64)
    ids[0, 0] = 4242  # an id the json does not list
    Image.fromarray(id_to_rgb(ids)).save(png)
    dataset = COCOPanopticDataset(root, "val2017")
    with pytest.raises(BadSampleError, match=r"000000000012\.png: segment ids 4242 are in the PNG but not in "
                                             r"segments_info"):
        dataset[1]
    dropped = COCOPanopticDataset(root, "val2017", on_bad_sample="drop")[1]
    assert set(dropped) == {SKIPPED} and dropped[SKIPPED][0].file == str(png)
    replaced = COCOPanopticDataset(root, "val2017", training=True, on_bad_sample="replace")[1]
    assert replaced["image_id"] == 13 and replaced[SKIPPED][0].file == str(png)

    Image.fromarray(id_to_rgb(np.zeros((20, 30), dtype=np.int64))).save(png)
    with pytest.raises(BadSampleError, match=rf"segment ids {GRASS_ID} are in segments_info but not in the PNG"):
        dataset[1]
    Image.fromarray(id_to_rgb(np.full((21, 30), GRASS_ID))).save(png)
    with pytest.raises(BadSampleError, match=r"the panoptic PNG is 30x21 \(WxH\) but its image is 30x20"):
        dataset[1]
    Image.fromarray(np.zeros((20, 30), dtype=np.uint8)).save(png)
    with pytest.raises(BadSampleError, match="a panoptic PNG must be RGB .* got mode L"):
        dataset[1]
    png.write_bytes(b"not a png")
    with pytest.raises(BadSampleError, match="cannot decode the panoptic PNG"):
        dataset[1]


def test_annotation_file_problems_are_errors_when_the_dataset_is_built(fixture_root: Path, tmp_path: Path) -> None:
    root = _copy(fixture_root, tmp_path)
    (root / "annotations" / "panoptic_val2017" / "000000000013.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 panoptic PNG\(s\) listed in .* missing from .*: 000000000013\.png"):
        COCOPanopticDataset(root, "val2017")
    shutil.rmtree(root)
    root = _copy(fixture_root, tmp_path)
    good = _json(root)
    cases = [
        (lambda d: d["annotations"][0]["segments_info"][1].update(category_id=99), "segment 1 of 000000000011.png "
         r"has category_id 99, which is not among the 3 'categories' \(ids 2, 7, 150\)"),
        (lambda d: d["annotations"][0]["segments_info"][1].update(id=300), r"segment ids \[5000000, 300, 300, 70000\]"),
        (lambda d: d["annotations"].pop(), r"1 image\(s\) have no annotation \(ids 13\)"),
        (lambda d: d["categories"][0].pop("isthing"), "needs an integer 'id', a 'name' and 'isthing'"),
        (lambda d: d["annotations"][0].update(image_id=99), r"refers to image_id 99"),
    ]
    for change, message in cases:
        document = json.loads(json.dumps(good))
        change(document)
        _rewrite(root, document)
        with pytest.raises(ValueError, match=message):
            COCOPanopticDataset(root, "val2017")
    shutil.rmtree(root / "annotations")
    with pytest.raises(FileNotFoundError, match="panoptic_annotations_trainval2017.zip"):
        COCOPanopticDataset(root, "val2017")
