"""Validation images that hold no object take part in COCO AP: a detection there is a false positive, scored as
pycocotools scores it, and an image without objects nor detections changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO

from tests.helpers import pycocotools_bbox_ap
from tests.unlabelled_data import write_coco_with_empty_images
from vitadapter.metrics.coco import COCOEvaluator

EMPTY_VAL_IDS = [2, 3]


@pytest.fixture(scope="module")
def annotation_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_coco_with_empty_images(tmp_path_factory.mktemp("coco_empty"), {"val2017": EMPTY_VAL_IDS})
    return root / "annotations" / "instances_val2017.json"


def _detections(gt: COCO, false_positive_score: float | None) -> dict[int, dict[str, torch.Tensor]]:
    """Every object found exactly (score 0.9); optionally one false positive on each image without objects, of a
    class that has objects elsewhere (COCOeval leaves out the classes without any)."""
    to_label = {c: i for i, c in enumerate(sorted(gt.cats))}
    present = to_label[gt.anns[min(gt.anns)]["category_id"]]
    out = {}
    for image_id in sorted(gt.imgs):
        anns = gt.imgToAnns[image_id]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        labels = [to_label[a["category_id"]] for a in anns]
        scores = [0.9] * len(anns)
        if not anns and false_positive_score is not None:
            boxes, labels, scores = [[10.0, 10.0, 40.0, 50.0]], [present], [false_positive_score]
        out[image_id] = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                         "scores": torch.tensor(scores), "labels": torch.tensor(labels, dtype=torch.int64)}
    return out


def _ours(annotation_file: Path, gt: COCO, detections: dict[int, dict[str, torch.Tensor]]) -> float:
    evaluator = COCOEvaluator(annotation_file, dict(enumerate(sorted(gt.cats))), ("bbox",))
    evaluator.update(list(detections), list(detections.values()))
    return evaluator.compute()["bbox_AP"]


def _pycocotools(gt: COCO, detections: dict[int, dict[str, torch.Tensor]]) -> float:
    category = dict(enumerate(sorted(gt.cats)))
    results = [{"image_id": i, "category_id": category[int(k)], "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)}
               for i, d in detections.items()
               for (x0, y0, x1, y1), s, k in zip(d["boxes"].tolist(), d["scores"], d["labels"])]
    return pycocotools_bbox_ap(gt, results)


def test_images_without_objects_count_their_false_positives_as_pycocotools_does(annotation_file: Path) -> None:
    gt = COCO(str(annotation_file))
    assert [i for i in sorted(gt.imgs) if not gt.imgToAnns[i]] == EMPTY_VAL_IDS
    assert _ours(annotation_file, gt, _detections(gt, None)) == pytest.approx(100.0)
    # a false positive that outranks the true detections lowers the precision of its class
    with_false_positives = _detections(gt, false_positive_score=0.95)
    ours = _ours(annotation_file, gt, with_false_positives)
    assert ours == pytest.approx(_pycocotools(gt, with_false_positives), abs=1e-9)
    assert ours < 100.0
