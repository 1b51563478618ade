"""PanopticMetrics against hand-computed fixtures (void, crowd, FP mostly in void, a class only predicted, things
vs stuff), against torchmetrics (which differs on void and crowd), and against a plain reimplementation of
panopticapi's rules over the synthetic set's ground truth with perturbed predictions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.detection import PanopticQuality

from tests.datasets.panoptic_layouts import perturbed_prediction
from vitadapter.data.coco_panoptic_dataset import COCOPanopticDataset
from vitadapter.data.synthetic.panoptic_writer import write_synthetic_coco_panoptic
from vitadapter.metrics import PanopticMetrics, flatten_panoptic_results, format_panoptic_table

NAMES = ["person", "car", "sky", "road", "tree"]
ISTHING = [True, True, False, False, False]


def _map(columns: dict[tuple[int, int], int], width: int, height: int = 4) -> torch.Tensor:
    """A height×width id map: segment id per inclusive column range, 0 (void) elsewhere."""
    ids = torch.zeros(height, width, dtype=torch.int64)
    for (first, last), segment_id in columns.items():
        ids[:, first:last + 1] = segment_id
    return ids


def _seg(segment_id: int, label: int, iscrowd: int = 0) -> dict[str, int]:
    return {"id": segment_id, "category_id": label, "iscrowd": iscrowd}


# Each image: (pred ids, pred segments, gt ids, gt segments); 4 rows, columns as below.
IMAGES = {
    # person gt cols 0-3 (16 px), void 4-9; pred person cols 1-5 (20 px, 8 in void): I 12, U 20+16-12-8 = 16,
    # IoU 0.75 (0.5 if the void pixels stayed in the union: no match)
    "void_out_of_union": (_map({(1, 5): 7}, 10), [_seg(7, 0)], _map({(0, 3): 1}, 10), [_seg(1, 0)]),
    # person crowd cols 0-4, car cols 5-9; pred person cols 0-3 (all in the crowd: not a FP, crowd not a FN);
    # pred car cols 4-9 (24 px; its 4 px in the person crowd do not count for a car): I 20, U 24 -> IoU 5/6
    "crowd": (_map({(0, 3): 3, (4, 9): 4}, 10), [_seg(3, 0), _seg(4, 1)],
              _map({(0, 4): 1, (5, 9): 2}, 10), [_seg(1, 0, iscrowd=1), _seg(2, 1)]),
    # sky gt cols 0-5, void 6-9, person gt 10-11; pred sky 0-4: I 20, U 24, IoU 5/6; pred car 5-8 (12 of 16 px
    # void: not a FP); pred car 9-11 (4 of 12 px void: a FP); person unmatched: a FN
    "fp_in_void": (_map({(0, 4): 5, (5, 8): 6, (9, 11): 8}, 12), [_seg(5, 2), _seg(6, 1), _seg(8, 1)],
                   _map({(0, 5): 1, (10, 11): 2}, 12), [_seg(1, 2), _seg(2, 0)]),
    # sky everywhere, predicted as road: a sky FN and a road FP (road is only ever predicted)
    "class_only_in_pred": (_map({(0, 9): 2}, 10), [_seg(2, 3)], _map({(0, 9): 1}, 10), [_seg(1, 2)]),
}
# per class over the four images: (IoU sum, TP, FP, FN); tree never appears
SUMS = {0: (0.75, 1, 0, 1), 1: (5 / 6, 1, 1, 0), 2: (5 / 6, 1, 0, 1), 3: (0.0, 0, 1, 0), 4: (0.0, 0, 0, 0)}
PQ_CLASS = [0.75 / 1.5, (5 / 6) / 1.5, (5 / 6) / 1.5, 0.0]  # IoU sum / (TP + FP/2 + FN/2)
SQ_CLASS = [0.75, 5 / 6, 5 / 6, 0.0]
RQ_CLASS = [1 / 1.5, 1 / 1.5, 1 / 1.5, 0.0]


def _metric(images: dict = IMAGES) -> PanopticMetrics:
    metric = PanopticMetrics(ISTHING, NAMES)
    for name, (pred_ids, pred_segments, gt_ids, gt_segments) in images.items():
        metric.update(pred_ids, pred_segments, gt_ids, gt_segments, name=name)
    return metric


def _close(value: torch.Tensor | float, expected: float) -> bool:
    return math.isclose(float(value), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_hand_computed_fixture() -> None:
    results = _metric().compute()
    for label, (iou, tp, fp, fn) in SUMS.items():
        assert _close(results["iou_sum"][label], iou)
        assert (int(results["tp"][label]), int(results["fp"][label]), int(results["fn"][label])) == (tp, fp, fn)
    for key, per_class in (("PQ", PQ_CLASS), ("SQ", SQ_CLASS), ("RQ", RQ_CLASS)):
        values = results[f"{key}_per_class"]
        assert all(_close(values[k], 100 * v) for k, v in enumerate(per_class)) and math.isnan(values[4])
        assert _close(results[key], 100 * sum(per_class) / 4)  # tree (nothing at all) left out
        assert _close(results[f"{key}_th"], 100 * sum(per_class[:2]) / 2)
        assert _close(results[f"{key}_st"], 100 * sum(per_class[2:]) / 2)  # road counts with 0
    assert (int(results["n"]), int(results["n_th"]), int(results["n_st"])) == (4, 2, 2)
    assert _close(results["PQ"], 100 * (0.5 + 5 / 9 + 5 / 9 + 0) / 4)  # 40.28


def test_each_rule_on_its_own() -> None:
    void = _metric({"a": IMAGES["void_out_of_union"]}).compute()
    assert int(void["tp"][0]) == 1 and _close(void["iou_sum"][0], 0.75) and int(void["fp"].sum()) == 0
    crowd = _metric({"b": IMAGES["crowd"]}).compute()
    assert crowd["fp"].tolist() == [0] * 5 and crowd["fn"].tolist() == [0] * 5
    assert crowd["tp"].tolist() == [0, 1, 0, 0, 0]
    assert int(crowd["n"]) == 1 and _close(crowd["PQ"], 100 * 5 / 6)  # person: only a crowd, left out


def test_crowd_of_another_class_does_not_excuse_a_false_positive() -> None:
    gt_ids, gt = _map({(0, 9): 1}, 10), [_seg(1, 0, iscrowd=1)]
    car = _metric({"x": (_map({(0, 9): 2}, 10), [_seg(2, 1)], gt_ids, gt)}).compute()
    person = _metric({"x": (_map({(0, 9): 2}, 10), [_seg(2, 0)], gt_ids, gt)}).compute()
    assert car["fp"].tolist() == [0, 1, 0, 0, 0] and person["fp"].tolist() == [0] * 5


def test_prediction_void_stays_in_the_union_unlike_torchmetrics() -> None:
    # person gt cols 0-4 (20 px); predicted person cols 0-1, the rest predicted void: panopticapi's union is
    # 8 + 20 - 8 = 20, IoU 0.4: no match, one FN and one FP; torchmetrics drops the predicted-void pixels from the
    # union (IoU 1.0, a TP), and with crowds it has no way to excuse a crowd FN
    pred_ids, gt_ids = _map({(0, 1): 5}, 10), _map({(0, 4): 1}, 10)
    ours = _metric({"e": (pred_ids, [_seg(5, 0)], gt_ids, [_seg(1, 0)])}).compute()
    assert (ours["tp"][0], ours["fp"][0], ours["fn"][0]) == (0, 1, 1) and _close(ours["PQ"], 0.0)

    void = len(NAMES)  # a category outside things and stuff: void for torchmetrics

    def pairs(ids: torch.Tensor, labels: dict[int, int]) -> torch.Tensor:
        category = torch.full_like(ids, void)
        for segment_id, label in labels.items():
            category[ids == segment_id] = label
        return torch.stack([category, ids], dim=-1)[None]

    torchmetrics_pq = PanopticQuality(things={0, 1}, stuffs={2, 3, 4}, allow_unknown_preds_category=True)
    torchmetrics_pq.update(pairs(pred_ids, {5: 0}), pairs(gt_ids, {1: 0}))
    assert _close(torchmetrics_pq.compute(), 1.0)  # a match where panopticapi has none
    # the crowd image: torchmetrics matches the person crowd as an instance (IoU 16/20) and averages it in
    crowd_pred, _, crowd_gt, _ = IMAGES["crowd"]
    torchmetrics_pq = PanopticQuality(things={0, 1}, stuffs={2, 3, 4}, allow_unknown_preds_category=True)
    torchmetrics_pq.update(pairs(crowd_pred, {3: 0, 4: 1}), pairs(crowd_gt, {1: 0, 2: 1}))
    assert math.isclose(float(torchmetrics_pq.compute()), (0.8 + 5 / 6) / 2, rel_tol=1e-6)  # float32 inside
    assert _close(_metric({"b": IMAGES["crowd"]}).compute()["PQ"], 100 * 5 / 6)


def test_sums_merge_across_processes() -> None:
    names = list(IMAGES)
    first, second = _metric({k: IMAGES[k] for k in names[:2]}), _metric({k: IMAGES[k] for k in names[2:]})
    first.merge_state(second)  # what DDP's dist_reduce_fx="sum" does
    merged, whole = first.compute(), _metric().compute()
    for key in ("iou_sum", "tp", "fp", "fn", "PQ_per_class"):
        assert torch.allclose(merged[key], whole[key], equal_nan=True)


def test_inconsistent_inputs_are_named() -> None:
    pred_ids, pred_segments, gt_ids, gt_segments = IMAGES["crowd"]
    metric = PanopticMetrics(ISTHING)
    with pytest.raises(ValueError, match=r"image b\.png, prediction: segment ids \[4\] are in the map but not"):
        metric.update(pred_ids, pred_segments[:1], gt_ids, gt_segments, name="b.png")
    with pytest.raises(ValueError, match=r"ground truth: segment ids \[\] are in the map .* \[9\] in its segments"):
        metric.update(pred_ids, pred_segments, gt_ids, [*gt_segments, _seg(9, 2)])
    with pytest.raises(ValueError, match="class 7, outside 0..4"):
        metric.update(pred_ids, [_seg(3, 7), _seg(4, 1)], gt_ids, gt_segments)
    with pytest.raises(ValueError, match="one size"):
        metric.update(pred_ids[:, :5], pred_segments, gt_ids, gt_segments)
    with pytest.raises(ValueError, match="repeated"):
        metric.update(pred_ids, [_seg(3, 0), _seg(3, 1), _seg(4, 1)], gt_ids, gt_segments)


def test_table_and_flat_figures() -> None:
    results = _metric().compute()
    flat = flatten_panoptic_results(results, NAMES)
    assert _close(flat["val/PQ"], float(results["PQ"])) and math.isnan(flat["val/PQ/tree"])
    assert _close(flat["val/SQ/car"], 100 * 5 / 6) and _close(flat["val/RQ_st"], 100 / 3)
    table = format_panoptic_table(results, NAMES, ISTHING)
    assert "| person | thing | 50.00 | 75.00 | 66.67 |  1 |  0 |  1 |" in table
    assert "| Stuff  | 27.78 | 41.67 | 33.33 |        2 |" in table
    with pytest.warns(UserWarning, match="before the ``update``"):
        empty = PanopticMetrics(ISTHING).compute()
    assert math.isnan(empty["PQ"]) and int(empty["n"]) == 0


# --- an independent, straightforward reading of panopticapi's rules: boolean masks, no id arithmetic --------------

def _reference_stats(pred_ids: np.ndarray, pred: list[dict], gt_ids: np.ndarray, gt: list[dict], k: int):
    iou_sum, tp, fp, fn = np.zeros(k), np.zeros(k, int), np.zeros(k, int), np.zeros(k, int)
    gt_void = gt_ids == 0
    matched_gt, matched_pred = set(), set()
    for g in gt:
        if g["iscrowd"]:
            continue
        g_mask = gt_ids == g["id"]
        for p in pred:
            if p["category_id"] != g["category_id"]:
                continue
            p_mask = pred_ids == p["id"]
            inter = np.logical_and(g_mask, p_mask).sum()
            union = np.logical_or(g_mask, p_mask & ~gt_void).sum()
            if inter / union > 0.5:
                iou_sum[g["category_id"]] += inter / union
                tp[g["category_id"]] += 1
                matched_gt.add(g["id"])
                matched_pred.add(p["id"])
    for g in gt:
        if not g["iscrowd"] and g["id"] not in matched_gt:
            fn[g["category_id"]] += 1
    for p in pred:
        if p["id"] in matched_pred:
            continue
        p_mask = pred_ids == p["id"]
        excused = gt_void.copy()
        for g in gt:
            if g["iscrowd"] and g["category_id"] == p["category_id"]:
                excused |= gt_ids == g["id"]
        if (p_mask & excused).sum() / p_mask.sum() <= 0.5:
            fp[p["category_id"]] += 1
    return iou_sum, tp, fp, fn


def test_agrees_with_a_plain_reimplementation_on_the_synthetic_set(tmp_path: Path) -> None:
    root = write_synthetic_coco_panoptic(tmp_path / "pan", num_train=1, num_val=24, image_size=64, seed=5)
    dataset = COCOPanopticDataset(root, "val2017")
    k = len(dataset.class_names)
    metric = PanopticMetrics(dataset.isthing, dataset.class_names)
    rng = np.random.default_rng(0)
    totals = [np.zeros(k), np.zeros(k, int), np.zeros(k, int), np.zeros(k, int)]
    for index in range(len(dataset)):
        sample = dataset[index]
        gt_ids, gt = sample["panoptic"].numpy(), sample["segments_info"]
        pred_ids, pred = perturbed_prediction(rng, gt_ids, gt, k)
        metric.update(torch.from_numpy(pred_ids), pred, sample["panoptic"], gt)
        for total, part in zip(totals, _reference_stats(pred_ids, pred, gt_ids, gt, k)):
            total += part
    results = metric.compute()
    assert np.allclose(results["iou_sum"].numpy(), totals[0], rtol=0, atol=1e-9)
    assert [results[key].tolist() for key in ("tp", "fp", "fn")] == [t.tolist() for t in totals[1:]]
    assert totals[1].sum() > 0 and totals[2].sum() > 0 and totals[3].sum() > 0  # every kind of outcome happened
    assert any(s["iscrowd"] for i in range(len(dataset)) for s in dataset[i]["segments_info"])
    denominator = totals[1] + 0.5 * totals[2] + 0.5 * totals[3]
    counted = denominator > 0
    assert _close(results["PQ"], 100 * float(np.mean(totals[0][counted] / denominator[counted])))
