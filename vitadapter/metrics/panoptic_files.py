"""PQ straight from files in the COCO panoptic format (as panopticapi's ``pq_compute``), e.g. to check that
written predictions reproduce a validation's score before submitting them."""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from vitadapter.data.coco_panoptic_dataset import read_categories
from vitadapter.data.coco_panoptic_format import decode_panoptic_annotation, load_panoptic_annotations
from vitadapter.metrics.panoptic import PanopticMetrics


def evaluate_panoptic_files(gt_json: str | Path, pred_json: str | Path, gt_dir: str | Path | None = None,
                            pred_dir: str | Path | None = None) -> dict[str, Tensor]:
    """PQ, SQ and RQ of a results json and its PNGs against a ground-truth panoptic json and its PNGs.

    Every ground-truth image needs a prediction (as panopticapi); predictions of other images are ignored.
    PNGs are read one image at a time.

    Args:
        gt_json: Ground-truth panoptic json (with ``categories``).
        pred_json: Results json (``annotations`` with original category ids).
        gt_dir: Ground-truth PNG folder; None: ``gt_json`` without ``.json``.
        pred_dir: Prediction PNG folder; None: ``pred_json`` without ``.json``.

    Returns:
        What :meth:`PanopticMetrics.compute` returns.
    """
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt_dir = gt_json.with_suffix("") if gt_dir is None else Path(gt_dir)
    pred_dir = pred_json.with_suffix("") if pred_dir is None else Path(pred_dir)
    categories = read_categories(gt_json, json.loads(gt_json.read_text()))
    to_contiguous = {c["id"]: i for i, c in enumerate(categories)}
    metric = PanopticMetrics([c["isthing"] for c in categories], [c["name"] for c in categories])
    predictions = {int(a["image_id"]): a for a in load_panoptic_annotations(pred_json)}
    for annotation in load_panoptic_annotations(gt_json):
        image_id = int(annotation["image_id"])
        if image_id not in predictions:
            raise ValueError(f"{pred_json} has no prediction for image {image_id} ({annotation['file_name']}) of "
                             f"{gt_json}; every ground-truth image needs one")
        gt = decode_panoptic_annotation(annotation, gt_dir, to_contiguous, gt_json)
        pred = decode_panoptic_annotation(predictions[image_id], pred_dir, to_contiguous, pred_json)
        metric.update(pred["panoptic"], pred["segments_info"], gt["panoptic"], gt["segments_info"],
                      name=gt["file_name"])
    return metric.compute()
