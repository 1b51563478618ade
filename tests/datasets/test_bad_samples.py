"""Bad data files, on real files written by the synthetic writers and then damaged.

Every kind raises a BadSampleError that names the file and says what is wrong; under a skipping policy
training gets the next good sample with the requested augmentation seed and evaluation drops the image,
and either way the batch lists exactly the bad files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitadapter.data.ade20k_datamodule import collate_as_lists
from vitadapter.data.ade20k_dataset import ADE20KDataset
from vitadapter.data.bad_samples import SKIPPED, BadSampleError, CollateWithSkips, SkippedFile
from vitadapter.data.coco_datamodule import collate_detection
from vitadapter.data.coco_dataset import COCODetectionDataset
from vitadapter.data.det_transforms import build_det_train_transform
from vitadapter.data.seg_transforms import build_train_transform
from vitadapter.data.synthetic import write_synthetic_ade20k
from vitadapter.data.synthetic.coco_writer import write_synthetic_coco
from vitadapter.metrics.coco import COCOEvaluator

SEED = 1234  # a training key's augmentation seed


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def garbage(path: Path) -> Path:
    path.write_bytes(b"not an image at all")
    return path


def save_label(path: Path, label: np.ndarray) -> Path:
    Image.fromarray(label).save(path)
    return path


def _out_of_range(path: Path) -> Path:
    label = np.asarray(Image.open(path)).copy()
    label[0, :2] = [9, 12]  # 8 and 11 after reduce_zero_label, outside [0, 8)
    return save_label(path, label)


# kind -> (damage one training pair given its image and label paths, returning the bad file; the reason it gets)
ADE_KINDS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "corrupt image": (lambda image, label: garbage(image), r"cannot decode the image: not an image format"),
    "truncated image": (lambda image, label: truncate(image), r"cannot decode the image: image file is truncated"),
    "truncated label": (lambda image, label: truncate(label), r"cannot decode the label: "),
    "label size": (lambda image, label: save_label(label, np.ones((50, 64), np.uint8)),
                   r"size mismatch: the label is 64x50 \(WxH\) but its image \S+ADE_train_00000002\.jpg is 64x64"),
    "label values": (lambda image, label: _out_of_range(label),
                     r"label values 8, 11 outside \[0, 8\) \(after reduce_zero_label=True; ignore_index=255\)"),
    "label mode": (lambda image, label: save_label(label, np.ones((64, 64, 3), np.uint8)),
                   r"the label has PIL mode 'RGB', not a single-channel class-index PNG"),
}


@pytest.fixture()
def ade_root(tmp_path: Path) -> Path:
    return write_synthetic_ade20k(tmp_path / "ade", num_train=4, num_val=2, image_size=64, seed=0)


def ade_pair(root: Path, index: int, split: str = "training") -> tuple[Path, Path]:
    stem = f"ADE_{'train' if split == 'training' else 'val'}_{index + 1:08d}"
    return root / "images" / split / f"{stem}.jpg", root / "annotations" / split / f"{stem}.png"


def ade_train(root: Path, policy: str) -> ADE20KDataset:
    transform = build_train_transform(32, scale=(64, 64), ratio_range=(0.5, 2.0), seed=0)
    return ADE20KDataset(root, "training", transform=transform, num_classes=8, on_bad_sample=policy)


def assert_same_sample(a: dict, b: dict) -> None:
    assert a["name"] == b["name"]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


@pytest.mark.parametrize("kind", ADE_KINDS)
def test_ade20k_bad_file_raises_naming_it(ade_root: Path, kind: str) -> None:
    damage, reason = ADE_KINDS[kind]
    bad = damage(*ade_pair(ade_root, 1))
    with pytest.raises(BadSampleError) as err:
        ade_train(ade_root, "raise")[(1, SEED)]
    message = str(err.value)
    assert message.startswith(f"bad data file {bad}: ") and re.search(reason, message), message
    assert "data.skip_bad_samples=true" in message
    assert err.value.file == str(bad) and re.fullmatch(reason + ".*", err.value.reason)


@pytest.mark.parametrize("kind", ADE_KINDS)
def test_ade20k_training_replaces_a_bad_sample_by_the_next_with_its_seed(ade_root: Path, kind: str) -> None:
    damage, reason = ADE_KINDS[kind]
    bad = damage(*ade_pair(ade_root, 1))
    skipping = ade_train(ade_root, "replace")
    item = skipping[(1, SEED)]
    # what index 2 gives with the same augmentation seed, read by a dataset that never saw the bad file
    assert_same_sample(item, ade_train(ade_root, "raise")[(2, SEED)])
    assert item[SKIPPED] == [SkippedFile(str(bad), item[SKIPPED][0].reason)]
    assert re.fullmatch(reason + ".*", item[SKIPPED][0].reason)
    assert_same_sample(skipping[(1, SEED)], item)  # a function of the key: no state in the dataset
    assert SKIPPED not in skipping[(2, SEED)]


def test_ade20k_replacement_passes_several_bad_files_and_wraps_around(ade_root: Path) -> None:
    last_image, _ = ade_pair(ade_root, 3)
    first_image, _ = ade_pair(ade_root, 0)
    truncate(last_image), garbage(first_image)
    item = ade_train(ade_root, "replace")[(3, SEED)]
    assert_same_sample(item, ade_train(ade_root, "raise")[(1, SEED)])
    assert [s.file for s in item[SKIPPED]] == [str(last_image), str(first_image)]
    for index in (1, 2):
        garbage(ade_pair(ade_root, index)[0])
    with pytest.raises(BadSampleError, match=r"all 4 samples are bad, nothing is left to train on"):
        ade_train(ade_root, "replace")[(0, SEED)]


def test_ade20k_evaluation_drops_a_bad_image_and_the_batch_lists_it(ade_root: Path) -> None:
    bad = truncate(ade_pair(ade_root, 0, "validation")[1])
    dataset = ADE20KDataset(ade_root, "validation", num_classes=8, on_bad_sample="drop")
    dropped = dataset[0]
    assert set(dropped) == {SKIPPED} and [s.file for s in dropped[SKIPPED]] == [str(bad)]
    collate = CollateWithSkips(collate_as_lists)
    batch = collate([dataset[0], dataset[1]])
    assert batch["name"] == ["ADE_val_00000002"] and len(batch["image"]) == len(batch["mask"]) == 1
    assert batch[SKIPPED] == dropped[SKIPPED]
    empty = collate([dataset[0]])  # a batch whose every image was bad
    assert empty == {"image": [], "mask": [], "name": [], SKIPPED: dropped[SKIPPED]}


def test_training_collate_stacks_replacements_and_lists_what_they_replaced(ade_root: Path) -> None:
    bad = truncate(ade_pair(ade_root, 1)[0])
    dataset = ade_train(ade_root, "replace")
    batch = CollateWithSkips()([dataset[(1, SEED)], dataset[(3, SEED)]])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["name"] == ["ADE_train_00000003", "ADE_train_00000004"]
    assert [s.file for s in batch[SKIPPED]] == [str(bad)]
    assert CollateWithSkips()([dataset[(2, SEED)], dataset[(3, SEED)]])[SKIPPED] == []


# COCO: the json's problems are errors when the dataset is built; these are found when an image is read
COCO_KINDS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "corrupt image": (garbage, r"cannot decode the image: not an image format"),
    "truncated image": (truncate, r"cannot decode the image: image file is truncated"),
    "size differs from the json": (
        lambda path: Image.open(path).resize((48, 64)).save(path) or path,
        r"the image is 48x64 \(WxH\) but \S+instances_train2017\.json says 64x64, so its boxes and masks would not "
        r"line up"),
}


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    return write_synthetic_coco(tmp_path / "coco", num_train=3, num_val=3, image_size=64, seed=0)


def coco_train(root: Path, policy: str) -> COCODetectionDataset:
    transform = build_det_train_transform(64, scale_range=(0.5, 1.5), seed=0)
    return COCODetectionDataset(root, "train2017", transform=transform, on_bad_sample=policy)


@pytest.mark.parametrize("kind", COCO_KINDS)
def test_coco_bad_image_raises_or_is_replaced(coco_root: Path, kind: str) -> None:
    damage, reason = COCO_KINDS[kind]
    bad = damage(coco_root / "train2017" / "000000000001.jpg")
    with pytest.raises(BadSampleError) as err:
        coco_train(coco_root, "raise")[(0, SEED)]
    assert str(err.value).startswith(f"bad data file {bad}: ") and re.search(reason, str(err.value))
    assert "data.skip_bad_samples=true" in str(err.value) and err.value.file == str(bad)
    item = coco_train(coco_root, "replace")[(0, SEED)]
    expected = coco_train(coco_root, "raise")[(1, SEED)]
    assert item["image_id"] == expected["image_id"] == 2 and torch.equal(item["image"], expected["image"])
    assert torch.equal(item["target"]["boxes"], expected["target"]["boxes"])
    assert len(item[SKIPPED]) == 1 and item[SKIPPED][0].file == str(bad)
    assert re.fullmatch(reason + ".*", item[SKIPPED][0].reason)


def test_coco_dropped_image_is_not_scored_as_an_image_without_detections(coco_root: Path) -> None:
    """Ground-truth boxes as detections score 100 AP on the images left; scoring the dropped one as
    empty would lower it (checked, so the test can fail)."""
    bad = truncate(coco_root / "val2017" / "000000000002.jpg")
    dataset = COCODetectionDataset(coco_root, "val2017", with_masks=False, on_bad_sample="drop")
    batch = CollateWithSkips(collate_detection)([dataset[i] for i in range(len(dataset))])
    assert batch["image_ids"] == [1, 3] and [s.file for s in batch[SKIPPED]] == [str(bad)]
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
               for t in batch["targets"]]
    evaluator = COCOEvaluator(dataset.annotation_file, dataset.contiguous_to_category_id, ("bbox",))
    evaluator.update(batch["image_ids"], perfect)
    assert evaluator.compute()["bbox_AP"] == pytest.approx(100.0)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    evaluator.update([2], [empty])
    assert evaluator.compute()["bbox_AP"] < 90.0
