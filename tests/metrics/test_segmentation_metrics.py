"""SegmentationMetrics vs a hand-computed confusion matrix, torchmetrics and DDP-style merges."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from vitadapter.metrics import (
    LabelRangeError,
    SegmentationMetrics,
    flatten_segmentation_results,
    format_segmentation_table,
)

NAMES = ["road", "tree", "car", "boat"]
NAN = float("nan")

# 4 classes: 0 and 1 labelled, 2 only predicted (IoU 0 counts), 3 absent everywhere (excluded).
# Two 1x5 label maps (B, H, W).
TARGET = torch.tensor([[[0, 0, 1, 1, 255]], [[1, 1, 0, 1, 255]]])
PREDS = torch.tensor([[[0, 1, 1, 1, 2]], [[1, 2, 0, 0, 0]]])
# Rows = label, columns = prediction, over the 8 non-ignored pixels.
CONFMAT = torch.tensor([[2, 1, 0, 0], [1, 3, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
INTERSECTION = [2, 3, 0, 0]
LABEL_AREA = [3, 5, 0, 0]
PRED_AREA = [3, 4, 1, 0]
UNION = [4, 6, 1, 0]
IOU = [50.0, 50.0, 0.0, NAN]  # 2/4, 3/6, 0/1, 0/0
ACC = [200 / 3, 60.0, NAN, NAN]  # 2/3, 3/5
MIOU = 100 / 3  # mean of 50, 50, 0
AACC = 62.5  # 5/8
MACC = (200 / 3 + 60.0) / 2


def _assert_hand_example(res: dict[str, torch.Tensor]) -> None:
    assert res["intersection"].tolist() == INTERSECTION
    assert res["label_area"].tolist() == LABEL_AREA
    assert res["pred_area"].tolist() == PRED_AREA
    assert res["union"].tolist() == UNION
    torch.testing.assert_close(res["IoU"], torch.tensor(IOU, dtype=torch.float64), equal_nan=True)
    torch.testing.assert_close(res["Acc"], torch.tensor(ACC, dtype=torch.float64), equal_nan=True)
    assert res["mIoU"].item() == pytest.approx(MIOU)
    assert res["aAcc"].item() == pytest.approx(AACC)
    assert res["mAcc"].item() == pytest.approx(MACC)


def test_hand_computed_confusion_matrix() -> None:
    metric = SegmentationMetrics(num_classes=4, class_names=NAMES)
    metric.update(PREDS, TARGET)
    assert torch.equal(metric.confmat, CONFMAT)
    res = metric.compute()
    _assert_hand_example(res)
    assert res["mIoU"].dim() == 0 and res["mIoU"].dtype == torch.float64


def test_accumulating_updates_equals_one_update() -> None:
    split = SegmentationMetrics(num_classes=4)
    split.update(PREDS[0], TARGET[0])  # (H, W) inputs
    split.update(PREDS[1:], TARGET[1:])  # (B, H, W) inputs
    _assert_hand_example(split.compute())

    gen = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 4, (6, 9, 7), generator=gen)
    target = torch.randint(0, 4, (6, 9, 7), generator=gen)
    target[:, :2] = 255
    whole, parts = SegmentationMetrics(4), SegmentationMetrics(4)
    whole.update(preds, target)
    for p, t in zip(preds.split(2), target.split(2)):
        parts.update(p, t)
    assert torch.equal(whole.confmat, parts.confmat)


def test_ddp_style_merge_equals_single_metric() -> None:
    a, b, single = SegmentationMetrics(4), SegmentationMetrics(4), SegmentationMetrics(4)
    a.update(PREDS[:1], TARGET[:1])
    b.update(PREDS[1:], TARGET[1:])
    single.update(PREDS, TARGET)
    manual = a.confmat + b.confmat
    assert torch.equal(manual, single.confmat)
    a.merge_state(b)
    assert torch.equal(a.confmat, single.confmat)
    _assert_hand_example(a.compute())


def test_matches_torchmetrics_dataset_level_jaccard() -> None:
    gen = torch.Generator().manual_seed(1)
    k = 5
    ours = SegmentationMetrics(num_classes=k)
    ref = MulticlassJaccardIndex(num_classes=k, average="macro", ignore_index=255)
    for _ in range(3):
        target = torch.randint(0, k, (2, 12, 10), generator=gen)
        # Mostly-correct predictions so IoUs differ between classes.
        noise = torch.randint(0, k, target.shape, generator=gen)
        preds = torch.where(torch.rand(target.shape, generator=gen) < 0.6, target, noise)
        target[torch.rand(target.shape, generator=gen) < 0.1] = 255
        ours.update(preds, target)
        ref.update(preds, target)
    res = ours.compute()
    assert bool((res["label_area"] > 0).all()) and bool((res["pred_area"] > 0).all())
    assert res["mIoU"].item() == pytest.approx(ref.compute().item() * 100, abs=1e-4)


def test_out_of_range_label_names_the_file() -> None:
    metric = SegmentationMetrics(num_classes=4)
    target = TARGET.clone()
    target[1, 0, 0] = 150  # ADE20K label without reduce_zero_label
    with pytest.raises(LabelRangeError) as err:
        metric.update(PREDS, target, names=["a_001.png", "b_002.png"])
    msg = str(err.value)
    assert "b_002.png" in msg and "a_001.png" not in msg
    assert "150" in msg and "num_classes=4" in msg
    assert metric.confmat.sum() == 0  # nothing was counted

    target[1, 0, 0] = -1
    with pytest.raises(LabelRangeError, match="batch sample 1"):
        metric.update(PREDS, target)

    target[0, 0, 1] = 4  # both files bad: both named
    with pytest.raises(LabelRangeError) as err:
        metric.update(PREDS, target, names=["a_001.png", "b_002.png"])
    assert "'a_001.png' contains values [4]" in str(err.value)
    assert "'b_002.png' contains values [-1]" in str(err.value)


def test_invalid_inputs_raise() -> None:
    metric = SegmentationMetrics(num_classes=4)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(PREDS[:, :, :4], TARGET)
    with pytest.raises(ValueError, match="predictions contain class ids \\[7\\]"):
        metric.update(torch.full_like(PREDS, 7), TARGET)
    with pytest.raises(ValueError, match="integer"):
        metric.update(PREDS.float(), TARGET)
    with pytest.raises(ValueError, match="names"):
        metric.update(PREDS, TARGET, names=["only_one.png"])
    with pytest.raises(ValueError, match="ignore_index"):
        SegmentationMetrics(num_classes=4, ignore_index=2)


def test_table_and_flat_results() -> None:
    metric = SegmentationMetrics(num_classes=4, class_names=NAMES)
    metric.update(PREDS, TARGET)
    res = metric.compute()
    table = format_segmentation_table(res, NAMES)
    for name in NAMES:
        assert name in table
    assert "| car " in table and "0.00" in table and "nan" in table
    assert "33.33" in table and "62.50" in table and "63.33" in table
    assert table.index("aAcc") > table.index("boat")

    flat = flatten_segmentation_results(res, NAMES)
    assert flat["val/mIoU"] == pytest.approx(MIOU)
    assert flat["val/aAcc"] == pytest.approx(AACC)
    assert flat["val/IoU/road"] == pytest.approx(50.0)
    assert flat["val/Acc/tree"] == pytest.approx(60.0)
    assert math.isnan(flat["val/IoU/boat"]) and math.isnan(flat["val/Acc/car"])
    assert len(flat) == 3 + 2 * len(NAMES)
    assert all(isinstance(v, float) for v in flat.values())
    assert set(flatten_segmentation_results(res, NAMES, prefix="test/")) == {
        k.replace("val/", "test/") for k in flat
    }
