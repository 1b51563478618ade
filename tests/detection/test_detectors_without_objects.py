"""Images without objects: the COCO dataset keeps them as empty targets and every detector trains on a batch of
them (torchvision's losses handle zero boxes; these tests pin that our wrappers and transforms keep it so)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.detection.test_detectors import DETECTORS, _detector
from tests.unlabelled_data import write_coco_with_empty_images
from vitadapter.data.coco_dataset import COCODetectionDataset
from vitadapter.data.det_transforms import build_det_train_transform

# the losses that only positives (boxes, masks) feed: exactly 0 on a batch without objects
POSITIVE_ONLY_LOSSES = {"loss_box_reg", "loss_rpn_box_reg", "loss_mask", "bbox_regression", "bbox_ctrness"}
EMPTY_TRAIN_IDS = [2, 4, 5]


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coco_with_empty_images(tmp_path_factory.mktemp("coco_empty"), {"train2017": EMPTY_TRAIN_IDS})


def test_images_without_annotations_are_empty_targets_of_the_right_size(coco_root: Path) -> None:
    transform = build_det_train_transform(96, (0.75, 1.25), seed=0)
    dataset = COCODetectionDataset(coco_root, "train2017", transform=transform)
    samples = [dataset[i] for i in range(len(dataset))]
    empty = [s for s in samples if s["image_id"] in EMPTY_TRAIN_IDS]
    assert len(samples) == 6 and len(empty) == 3
    for sample in empty:
        target, (_, h, w) = sample["target"], sample["image"].shape
        assert (h, w) == (96, 96)  # padded to image_size like every training image
        assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
        assert target["masks"].shape == (0, 96, 96)
    # the default training set (data.skip_empty_train=true) leaves them out; evaluation keeps every image
    assert len(COCODetectionDataset(coco_root, "train2017", skip_empty=True)) == 3


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_trains_on_a_batch_without_objects(name: str) -> None:
    torch.manual_seed(0)
    detector = _detector(name).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 96, 96, dtype=torch.uint8)}
    losses = detector([torch.randn(3, 96, 96), torch.randn(3, 96, 96)], [empty, dict(empty)])
    assert all(torch.isfinite(v) for v in losses.values())
    assert {k: float(v) for k, v in losses.items() if k in POSITIVE_ONLY_LOSSES} == {
        k: 0.0 for k in losses if k in POSITIVE_ONLY_LOSSES}
    sum(losses.values()).backward()
    # every trainable tensor is reached (DDP with find_unused_parameters=false), with a finite gradient
    trainable = {n: p for n, p in detector.named_parameters() if p.requires_grad}
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())
