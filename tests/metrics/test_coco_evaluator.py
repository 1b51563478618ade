"""Tests for COCOEvaluator and evaluate_results_file on two real COCO val2017 annotations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from pycocotools.coco import COCO

from vitadapter.metrics.coco import COCOEvaluator, evaluate_results_file, merge_rank_results

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "coco" / "annotations" / "instances_val2017.json"
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@pytest.fixture(scope="module")
def gt() -> COCO:
    return COCO(str(FIXTURE))


def _label_maps(gt: COCO) -> tuple[dict[int, int], dict[int, int]]:
    ids = sorted(gt.cats)
    return dict(enumerate(ids)), {c: i for i, c in enumerate(ids)}


def _gt_predictions(gt: COCO, image_id: int, probabilities: bool) -> dict[str, torch.Tensor]:
    """The non-crowd ground truth of one image as detections with score 1."""
    _, to_label = _label_maps(gt)
    anns = [a for a in gt.imgToAnns[image_id] if not a["iscrowd"]]
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float64)
    masks = torch.stack([torch.from_numpy(gt.annToMask(a)).bool() for a in anns])
    return {
        "boxes": boxes.float(),
        "scores": torch.ones(len(anns)),
        "labels": torch.tensor([to_label[a["category_id"]] for a in anns]),
        # N×1×H×W probabilities (as Mask R-CNN returns them) or N×H×W bool
        "masks": masks[:, None].float() * 0.8 + 0.1 if probabilities else masks,
    }


def _evaluator(gt: COCO, path: Path = FIXTURE, **kwargs: Any) -> COCOEvaluator:
    return COCOEvaluator(path, _label_maps(gt)[0], **kwargs)


def test_ground_truth_scores_100(gt: COCO) -> None:
    ev = _evaluator(gt)
    ev.update([139], [_gt_predictions(gt, 139, probabilities=True)])
    ev.update([255917], [_gt_predictions(gt, 255917, probabilities=False)])
    metrics = ev.compute()
    assert set(metrics) == {f"{t}_{k}" for t in ("bbox", "segm") for k in KEYS}
    assert all(v == pytest.approx(100.0) for v in metrics.values())


def test_results_format_and_json_round_trip(gt: COCO, tmp_path: Path) -> None:
    ev = _evaluator(gt)
    preds = [_gt_predictions(gt, i, probabilities=False) for i in (139, 255917)]
    preds[0]["scores"] = torch.linspace(0.2, 0.9, len(preds[0]["scores"]))
    preds[0]["boxes"] = preds[0]["boxes"] + 3.0  # imperfect, so the numbers are not all 100
    ev.update([139, 255917], preds)
    results = ev.results()
    assert len(results) == 20 + 16
    first = results[0]
    assert set(first) == {"image_id", "category_id", "bbox", "score", "segmentation"}
    assert first["category_id"] in gt.cats and len(first["bbox"]) == 4
    assert isinstance(first["segmentation"]["counts"], str) and first["segmentation"]["size"] == [426, 640]
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(results))
    in_memory = ev.compute()
    assert in_memory["bbox_AP"] < 100.0
    assert evaluate_results_file(FIXTURE, path) == in_memory


def test_empty_predictions_score_zero(gt: COCO) -> None:
    ev = _evaluator(gt)
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 1, 426, 640),
    }
    ev.update([139], [empty])
    ev.update([255917], [{**empty, "masks": torch.zeros(0, 1, 427, 640)}])
    assert ev.results() == []
    metrics = ev.compute()
    assert len(metrics) == 12 and all(v == 0.0 for v in metrics.values())
    ev.reset()
    assert ev.compute() == {f"bbox_{k}": 0.0 for k in KEYS}  # nothing updated: every image counts as missed


def test_size_range_without_ground_truth_is_none(gt: COCO, tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["area"] < 96**2]  # no large objects left
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(data))
    small_gt = COCO(str(path))
    ev = COCOEvaluator(path, _label_maps(gt)[0], iou_types=("bbox",))
    for image_id in (139, 255917):
        ev.update([image_id], [_gt_predictions(small_gt, image_id, probabilities=False)])
    metrics = ev.compute()
    assert metrics["bbox_APl"] is None
    assert metrics["bbox_AP"] == pytest.approx(100.0) and metrics["bbox_APs"] == pytest.approx(100.0)


def test_bad_predictions_raise(gt: COCO) -> None:
    ev = _evaluator(gt)
    pred = _gt_predictions(gt, 139, probabilities=False)
    with pytest.raises(ValueError, match="image id 42"):
        ev.update([42], [pred])
    with pytest.raises(ValueError, match="label 80"):
        ev.update([139], [{**pred, "labels": torch.full_like(pred["labels"], 80)}])
    with pytest.raises(ValueError, match="original image pixels"):
        ev.update([139], [{**pred, "masks": pred["masks"][:, :100]}])
    ev.update([139], [pred])
    with pytest.raises(ValueError, match="already updated"):
        ev.update([139], [pred])
    with pytest.raises(ValueError, match="masks"):
        ev.update([255917], [{k: v for k, v in _gt_predictions(gt, 255917, False).items() if k != "masks"}])
    assert ev.image_ids == [139]
    with pytest.raises(ValueError, match="not in"):
        COCOEvaluator(FIXTURE, {0: 12})  # 12 is one of COCO's unused ids


def test_boxes_only_report_bbox_metrics(gt: COCO) -> None:
    ev = _evaluator(gt)
    pred = {k: v for k, v in _gt_predictions(gt, 139, probabilities=False).items() if k != "masks"}
    ev.update([139], [pred])
    metrics = ev.compute()
    assert set(metrics) == {f"bbox_{k}" for k in KEYS} and metrics["bbox_AP"] == pytest.approx(100.0)


def test_merge_keeps_each_image_once() -> None:
    rank0 = {1: [{"image_id": 1, "score": 0.9}], 2: [{"image_id": 2, "score": 0.8}]}
    rank1 = {2: [{"image_id": 2, "score": 0.1}], 3: []}
    merged, with_masks = merge_rank_results([(rank0, False), (rank1, False), ({}, None)])
    assert sorted(merged) == [1, 2, 3] and merged[2][0]["score"] == 0.8 and with_masks is False
    with pytest.raises(ValueError, match="masks"):
        merge_rank_results([(rank0, True), (rank1, False)])


def test_gather_uses_all_gather_object(gt: COCO, monkeypatch: pytest.MonkeyPatch) -> None:
    ev = _evaluator(gt)
    ev.update([139], [_gt_predictions(gt, 139, probabilities=False)])
    other_rank = ev._per_image.copy()  # the other rank evaluated 139 again (padding) and 255917
    other = COCOEvaluator(FIXTURE, _label_maps(gt)[0])
    other.update([255917], [_gt_predictions(gt, 255917, probabilities=False)])
    other_rank.update(other._per_image)

    def fake_all_gather(out: list[Any], obj: Any) -> None:
        out[0], out[1] = obj, (other_rank, True)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "all_gather_object", fake_all_gather)
    ev.gather()
    assert ev.image_ids == [139, 255917] and len(ev.results()) == 36
    assert ev.compute()["segm_AP"] == pytest.approx(100.0)
