"""COCO box and mask AP with pycocotools' COCOeval, for predictions in original image pixels.

Numbers are COCOeval's ``stats[0:6]`` (AP, AP50, AP75, APs, APm, APl at 100 detections per image) in
percent; COCOeval's -1 (no ground truth in that size range) becomes None. Handled here because
pycocotools does not: ``loadRes([])`` crashes, so an empty result set is built by hand (AP 0.0 where
there is ground truth); and mask AP is computed from results without a ``bbox`` key, since
``loadRes`` would otherwise take the box area as the instance area for the small/medium/large split
(detectron2 does the same). Evaluation covers the images passed to ``update``, as in detectron2.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vitadapter.utils.ranks import gather_from_ranks

log = logging.getLogger(__name__)

IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
METRIC_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")
MASK_THRESHOLD = 0.5


def _quiet_coco(annotation_file: str | Path) -> COCO:
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _check_iou_types(iou_types: Sequence[str]) -> tuple[str, ...]:
    types = tuple(str(t) for t in iou_types)
    unknown = sorted(set(types) - set(IOU_TYPES))
    if unknown or not types:
        raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {iou_types!r}")
    return types


def _load_results(coco_gt: COCO, results: list[dict[str, Any]]) -> COCO:
    """``coco_gt.loadRes`` that also accepts an empty list (and leaves ``results`` untouched)."""
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(copy.deepcopy(results))
    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def _evaluate(
    coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, image_ids: Sequence[int] | None
) -> dict[str, float | None]:
    if iou_type == "segm":  # mask area, not box area, decides small/medium/large
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    else:
        results = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    coco_eval = COCOeval(coco_gt, _load_results(coco_gt, results), iouType=iou_type)
    if image_ids is not None:
        coco_eval.params.imgIds = sorted(int(i) for i in image_ids)
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    log.debug("COCOeval %s:\n%s", iou_type, summary.getvalue())
    stats = coco_eval.stats[: len(METRIC_NAMES)]
    return {f"{iou_type}_{name}": (None if v < 0 else float(v) * 100.0) for name, v in zip(METRIC_NAMES, stats)}


def evaluate_results_file(
    annotation_file: str | Path,
    results_file: str | Path,
    iou_types: Sequence[str] = IOU_TYPES,
    image_ids: Sequence[int] | None = None,
) -> dict[str, float | None]:
    """Run COCOeval straight on a results json (e.g. to check that saved predictions reproduce a score).

    Args:
        annotation_file: Ground-truth instances json.
        results_file: COCO results json (a list of detections).
        iou_types: "bbox" and/or "segm"; "segm" is skipped when the results carry no segmentation.
        image_ids: Images to evaluate; None evaluates every image of the ground truth.

    Returns:
        ``{"bbox_AP", ..., "segm_APl"}`` in percent (None where COCOeval reports -1).
    """
    types = _check_iou_types(iou_types)
    coco_gt = _quiet_coco(annotation_file)
    results = json.loads(Path(results_file).read_text())
    if not isinstance(results, list):
        raise ValueError(f"{results_file} must hold a JSON list of detections, got {type(results).__name__}")
    metrics: dict[str, float | None] = {}
    for iou_type in types:
        if iou_type == "segm" and results and not all("segmentation" in r for r in results):
            continue
        metrics.update(_evaluate(coco_gt, results, iou_type, image_ids))
    return metrics


class COCOEvaluator:
    """Collect detections per image and score them with COCOeval.

    Args:
        annotation_file: Ground-truth instances json of the evaluated split.
        contiguous_to_category_id: Model label (0..K-1) -> COCO category id.
        iou_types: "bbox" and/or "segm"; mask AP is reported only when every update carried masks.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        contiguous_to_category_id: Mapping[int, int],
        iou_types: Sequence[str] = IOU_TYPES,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.iou_types = _check_iou_types(iou_types)
        self.coco_gt = _quiet_coco(self.annotation_file)
        self.label_to_category = {int(k): int(v) for k, v in contiguous_to_category_id.items()}
        unknown = sorted(set(self.label_to_category.values()) - set(self.coco_gt.cats))
        if unknown:
            raise ValueError(f"category ids {unknown} of contiguous_to_category_id are not in {self.annotation_file}")
        self.reset()

    def reset(self) -> None:
        """Forget all collected detections."""
        self._per_image: dict[int, list[dict[str, Any]]] = {}
        self._with_masks: bool | None = None

    def _check_image(self, image_id: int) -> dict[str, Any]:
        image = self.coco_gt.imgs.get(image_id)
        if image is None:
            raise ValueError(f"prediction for image id {image_id}, which is not in {self.annotation_file}")
        if image_id in self._per_image:
            raise ValueError(f"image id {image_id} was already updated; call reset() before a new evaluation")
        return image

    def _category_ids(self, labels: torch.Tensor, image_id: int) -> list[int]:
        out = []
        for label in labels.tolist():
            if int(label) not in self.label_to_category:
                raise ValueError(
                    f"prediction for image {image_id} has label {label}, which maps to no category id "
                    f"(known labels 0..{len(self.label_to_category) - 1})"
                )
            out.append(self.label_to_category[int(label)])
        return out

    def _encode_masks(self, masks: torch.Tensor, image: dict[str, Any], n: int) -> list[dict[str, Any]]:
        masks = masks.detach().cpu()
        if masks.dim() == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        expected = (n, int(image["height"]), int(image["width"]))
        if tuple(masks.shape) != expected:
            raise ValueError(
                f"masks for image {image['id']} have shape {tuple(masks.shape)}; expected {expected} "
                "(N×H×W or N×1×H×W, in original image pixels)"
            )
        binary = masks if masks.dtype == torch.bool else masks > MASK_THRESHOLD
        fortran = np.asfortranarray(binary.numpy().transpose(1, 2, 0).astype(np.uint8))
        rles = mask_utils.encode(fortran) if n else []
        return [{"size": list(r["size"]), "counts": r["counts"].decode("ascii")} for r in rles]

    def update(self, image_ids: Sequence[int], predictions: Sequence[Mapping[str, torch.Tensor]]) -> None:
        """Add the detections of a batch.

        Args:
            image_ids: Original COCO image ids, one per prediction.
            predictions: Per image, in original pixels: ``boxes`` (N×4 xyxy), ``scores`` (N), ``labels``
                (N, contiguous) and optionally ``masks`` (N×1×H×W probabilities or N×H×W bool).
        """
        if len(image_ids) != len(predictions):
            raise ValueError(f"got {len(image_ids)} image ids for {len(predictions)} predictions")
        for raw_id, pred in zip(image_ids, predictions):
            image_id = int(raw_id)
            image = self._check_image(image_id)
            boxes = pred["boxes"].detach().cpu().double().reshape(-1, 4)
            scores = pred["scores"].detach().cpu().double().reshape(-1)
            labels = pred["labels"].detach().cpu().reshape(-1)
            if not len(boxes) == len(scores) == len(labels):
                raise ValueError(f"image {image_id}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
            has_masks = pred.get("masks") is not None
            if self._with_masks is None:
                self._with_masks = has_masks
            elif has_masks != self._with_masks:
                raise ValueError("either every prediction carries masks or none does")
            categories = self._category_ids(labels, image_id)
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
            rles = self._encode_masks(pred["masks"], image, len(boxes)) if has_masks else [None] * len(boxes)
            entries = []
            for box, score, cat, rle in zip(xywh, scores.tolist(), categories, rles):
                entry = {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}
                if rle is not None:
                    entry["segmentation"] = rle
                entries.append(entry)
            self._per_image[image_id] = entries

    @property
    def image_ids(self) -> list[int]:
        """Ids of the images updated so far (sorted)."""
        return sorted(self._per_image)

    def results(self) -> list[dict[str, Any]]:
        """All detections in the COCO results format (original image and category ids), by image id."""
        return [entry for image_id in sorted(self._per_image) for entry in self._per_image[image_id]]

    def gather(self) -> None:
        """Merge the detections of all ranks (call on every rank); an image seen by several ranks counts once."""
        payloads = gather_from_ranks((self._per_image, self._with_masks))
        if len(payloads) == 1:
            return
        self._per_image, self._with_masks = merge_rank_results(payloads)

    def compute(self) -> dict[str, float | None]:
        """Score the collected detections on the updated images (all ground-truth images if none was updated).

        Returns:
            ``{"bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl"}`` in percent, plus the
            same ``segm_*`` keys when masks were given; None where the split has no ground truth of that size.
        """
        image_ids: list[int] | None = self.image_ids
        if not image_ids:
            log.warning("COCOEvaluator.compute() without any update: scoring an empty result set on all images")
            image_ids = None
        results = self.results()
        metrics: dict[str, float | None] = {}
        for iou_type in self.iou_types:
            if iou_type == "segm" and not self._with_masks:
                continue
            metrics.update(_evaluate(self.coco_gt, results, iou_type, image_ids))
        return metrics


def merge_rank_results(
    payloads: Sequence[tuple[dict[int, list[dict[str, Any]]], bool | None]],
) -> tuple[dict[int, list[dict[str, Any]]], bool | None]:
    """Merge per-rank ``(detections by image id, masks given)``; the lowest rank wins an image seen twice.

    Args:
        payloads: One entry per rank, in rank order.

    Returns:
        The merged detections and whether masks were given (None if no rank saw an image).
    """
    merged: dict[int, list[dict[str, Any]]] = {}
    flags = {flag for _, flag in payloads if flag is not None}
    if len(flags) > 1:
        raise ValueError("some ranks gave masks and others did not")
    for per_image, _ in payloads:
        for image_id, entries in per_image.items():
            merged.setdefault(int(image_id), entries)
    return merged, (flags.pop() if flags else None)
