"""Tests for COCODetectionDataset and the detection transforms, on two real COCO val2017 annotations."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from vitadapter.data.bad_samples import BadSampleError
from vitadapter.data.coco_dataset import COCODetectionDataset, decode_segmentation
from vitadapter.data.det_transforms import build_det_train_transform, build_det_val_transform

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "coco" / "annotations" / "instances_val2017.json"
IMAGE_SIZES = {"000000000139.jpg": (640, 426), "000000255917.jpg": (640, 427)}  # (width, height)
CROWD_ID = 900300255917
TABLE_ID = 2204286  # dining table, three polygons


def _gt() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


@pytest.fixture()
def make_root(tmp_path: Path) -> Callable[..., Path]:
    """make_root(edit=None, modes=None) -> a COCO root with the fixture json (optionally edited) and stand-in JPEGs."""

    def _make(edit: Callable[[dict[str, Any]], None] | None = None, modes: dict[str, str] | None = None) -> Path:
        root = tmp_path / "coco"
        shutil.rmtree(root, ignore_errors=True)
        (root / "annotations").mkdir(parents=True)
        (root / "val2017").mkdir()
        gt = _gt()
        if edit is not None:
            edit(gt)
        (root / "annotations" / "instances_val2017.json").write_text(json.dumps(gt))
        rng = np.random.default_rng(0)
        for image in gt["images"]:
            w, h = image["width"], image["height"]
            pixels = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            mode = (modes or {}).get(image["file_name"], "RGB")
            pixels = pixels.convert(mode)
            pixels.save(root / "val2017" / image["file_name"], format="PNG" if mode == "RGBA" else "JPEG")
        return root

    return _make


def _index_of(ds: COCODetectionDataset, image_id: int) -> int:
    return ds.image_ids.index(image_id)


def test_contiguous_labels_round_trip(make_root: Callable[..., Path]) -> None:
    ds = COCODetectionDataset(make_root())
    assert len(ds.category_ids) == 80 and ds.category_ids == sorted(ds.category_ids) and ds.category_ids[-1] == 90
    assert list(ds.contiguous_to_category_id) == list(range(80))
    assert all(ds.category_id_to_contiguous[c] == k for k, c in ds.contiguous_to_category_id.items())
    assert ds.class_names[0] == "person" and ds.class_names[-1] == "toothbrush"
    by_id = {a["id"]: a for a in _gt()["annotations"]}
    for index in range(len(ds)):
        labels = ds[index]["target"]["labels"]
        assert labels.dtype == torch.int64
        originals = [by_id[i]["category_id"] for i in ds.annotation_ids(index)]
        assert [ds.contiguous_to_category_id[int(k)] for k in labels] == originals


def test_item_without_transform(make_root: Callable[..., Path]) -> None:
    ds = COCODetectionDataset(make_root())
    assert ds.image_ids == [139, 255917]
    item = ds[_index_of(ds, 139)]
    assert item["image_id"] == 139 and item["orig_size"] == (426, 640) and item["scale"] == 1.0
    assert item["image"].shape == (3, 426, 640) and item["image"].dtype == torch.float32
    target = item["target"]
    assert target["boxes"].shape == (20, 4) and target["boxes"].dtype == torch.float32
    assert target["masks"].shape == (20, 426, 640) and target["masks"].dtype == torch.uint8
    first = next(a for a in _gt()["annotations"] if a["id"] == ds.annotation_ids(0)[0])
    x, y, w, h = first["bbox"]
    assert target["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h], abs=1e-4)


def test_crowd_left_out_of_targets_but_decodes(make_root: Callable[..., Path]) -> None:
    ds = COCODetectionDataset(make_root())
    index = _index_of(ds, 255917)
    assert CROWD_ID not in ds.annotation_ids(index)
    assert len(ds[index]["target"]["labels"]) == 16  # 17 annotations, one of them crowd
    crowd = next(a for a in _gt()["annotations"] if a["id"] == CROWD_ID)
    assert isinstance(crowd["segmentation"]["counts"], list)  # uncompressed RLE
    assert int(decode_segmentation(crowd["segmentation"], 427, 640).sum()) == 3386


def test_multi_polygon_mask_is_one_union(make_root: Callable[..., Path]) -> None:
    ds = COCODetectionDataset(make_root())
    index = _index_of(ds, 139)
    row = ds.annotation_ids(index).index(TABLE_ID)
    mask = ds[index]["target"]["masks"][row].numpy().astype(bool)
    table = next(a for a in _gt()["annotations"] if a["id"] == TABLE_ID)
    assert len(table["segmentation"]) == 3
    parts = mask_utils.decode(mask_utils.frPyObjects(table["segmentation"], 426, 640)).astype(bool)
    assert np.array_equal(mask, parts.any(axis=2))
    assert all(mask.sum() > parts[:, :, k].sum() for k in range(3))


def test_64bit_annotation_id_survives(make_root: Callable[..., Path]) -> None:
    big = 2**40 + 7

    def edit(gt: dict[str, Any]) -> None:
        next(a for a in gt["annotations"] if a["id"] == 403418)["id"] = big

    ds = COCODetectionDataset(make_root(edit))
    assert big in ds.annotation_ids(_index_of(ds, 255917))


def test_image_without_annotations_kept_for_eval_skipped_for_training(make_root: Callable[..., Path]) -> None:
    def edit(gt: dict[str, Any]) -> None:
        gt["images"].append({"id": 7, "file_name": "000000000007.jpg", "width": 48, "height": 32})

    root = make_root(edit)
    evaluation = COCODetectionDataset(root)
    assert evaluation.image_ids == [7, 139, 255917]
    empty = evaluation[0]
    assert empty["target"]["boxes"].shape == (0, 4) and empty["target"]["labels"].shape == (0,)
    assert empty["target"]["masks"].shape == (0, 32, 48)
    assert COCODetectionDataset(root, skip_empty=True).image_ids == [139, 255917]


def test_degenerate_boxes_dropped_with_one_warning(make_root: Callable[..., Path]) -> None:
    def edit(gt: dict[str, Any]) -> None:
        for ann_id, bbox in ((26547, [236.98, 142.51, 0.5, 69.5]), (34646, [7.03, 167.76, 149.32, 0.2])):
            next(a for a in gt["annotations"] if a["id"] == ann_id)["bbox"] = bbox

    root = make_root(edit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = COCODetectionDataset(root)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "instances_val2017.json" in message and "2 annotation(s)" in message and "26547" in message
    index = _index_of(ds, 139)
    assert len(ds[index]["target"]["labels"]) == 18
    assert 26547 not in ds.annotation_ids(index)


def test_unknown_category_names_file_and_annotation(make_root: Callable[..., Path]) -> None:
    def edit(gt: dict[str, Any]) -> None:
        next(a for a in gt["annotations"] if a["id"] == 1647285)["category_id"] = 91

    with pytest.raises(ValueError, match=r"instances_val2017\.json: annotation 1647285 has category_id 91"):
        COCODetectionDataset(make_root(edit))


def test_missing_files_explain_layout_and_download(tmp_path: Path, make_root: Callable[..., Path]) -> None:
    with pytest.raises(FileNotFoundError) as err:
        COCODetectionDataset(tmp_path / "nowhere")
    message = str(err.value)
    assert "instances_val2017.json" in message and "train2017/" in message
    assert "download_coco.sh" in message and "data.root=" in message
    root = make_root()
    shutil.rmtree(root / "val2017")
    with pytest.raises(FileNotFoundError, match="image folder"):
        COCODetectionDataset(root)
    (root / "val2017").mkdir()
    with pytest.raises(FileNotFoundError, match="000000000139.jpg"):
        COCODetectionDataset(root)


def test_color_modes_and_unreadable_image(make_root: Callable[..., Path]) -> None:
    root = make_root(modes={"000000000139.jpg": "L", "000000255917.jpg": "RGBA"})
    ds = COCODetectionDataset(root)
    assert all(ds.load_image(i).shape[2] == 3 for i in range(2))
    (root / "val2017" / "000000000139.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BadSampleError, match=r"000000000139\.jpg: cannot decode the image"):
        ds[_index_of(ds, 139)]


def test_val_transform_scale_is_exact(make_root: Callable[..., Path]) -> None:
    root = make_root()
    raw = COCODetectionDataset(root)
    ds = COCODetectionDataset(root, transform=build_det_val_transform(320), with_masks=False)
    for index in range(len(ds)):
        item, orig = ds[index], raw[index]
        assert item["scale"] == 0.5 and "masks" not in item["target"]
        assert item["image"].shape[1:] == (round(orig["orig_size"][0] * 0.5), 320)
        restored = item["target"]["boxes"] / item["scale"]
        assert torch.allclose(restored, orig["target"]["boxes"], atol=1e-3)


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    inter = (torch.min(a[2:], b[2:]) - torch.max(a[:2], b[:2])).clamp(min=0).prod()
    return float(inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter))


def test_lsj_output_square_with_aligned_boxes_and_masks(make_root: Callable[..., Path]) -> None:
    size = 256
    ds = COCODetectionDataset(make_root(), transform=build_det_train_transform(size, scale_range=(0.2, 1.5), seed=0))
    ious = []
    for _ in range(3):
        for index in range(len(ds)):
            item = ds[index]
            image, target = item["image"], item["target"]
            assert image.shape == (3, size, size)
            boxes, masks = target["boxes"], target["masks"]
            assert len(boxes) == len(target["labels"]) == len(masks) and masks.shape[1:] == (size, size)
            assert (boxes >= 0).all() and (boxes <= size).all()
            assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
            content_h = round(item["orig_size"][0] * item["scale"])
            if content_h < size:
                assert (image[:, content_h:, :] == 0).all()  # bottom padding, after normalising
            for box, mask in zip(boxes, masks):
                ys, xs = torch.nonzero(mask, as_tuple=True)
                mask_box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
                assert (mask_box[:2] >= box[:2] - 1).all() and (mask_box[2:] <= box[2:] + 1).all()
                ious.append(_box_iou(mask_box, box))
    # thin parts of small objects can vanish when masks shrink, so only the typical instance must match
    assert len(ious) > 20 and float(np.median(ious)) > 0.85


def test_transform_drops_masks_with_their_boxes() -> None:
    transform = build_det_train_transform(64, scale_range=(1.0, 1.0), seed=0)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    masks = np.zeros((3, 64, 64), dtype=np.uint8)
    masks[0, 10:20, 10:30] = 1
    masks[2, 40:60, 5:25] = 1  # masks[1] is empty although its box is not
    boxes = np.array([[10, 10, 30, 20], [30, 30, 50, 50], [5, 40, 25, 60]], dtype=np.float32)
    out = transform(image, boxes, np.array([4, 5, 6]), masks)
    assert sorted(out["labels"].tolist()) == [4, 6] and out["masks"].shape == (2, 64, 64)
    for box, mask in zip(out["boxes"], out["masks"]):
        assert mask.sum() == (box[2] - box[0]) * (box[3] - box[1])
