"""Panoptic quality (PQ = SQ × RQ; Kirillov et al., "Panoptic Segmentation", CVPR 2019), as panopticapi's
``pq_compute`` defines it.

Per image, a predicted and a ground-truth segment of the same class match when their IoU exceeds 0.5, where
the union leaves out the predicted segment's pixels that are void in the ground truth; matches are then
unique. Unmatched ground-truth segments are false negatives unless they are crowd regions (``iscrowd``);
unmatched predicted segments are false positives unless more than half of their pixels are void or in a
crowd region of their class. Per class, over the dataset: PQ = Σ IoU / (TP + FP/2 + FN/2), SQ = Σ IoU / TP
(0 without a TP), RQ = TP / (TP + FP/2 + FN/2); the averages (all classes, things, stuff) leave out classes
with no TP, FP or FN. The per-class sums are the metric's state, summed across processes under DDP.

Written here rather than taken from torchmetrics: its ``PanopticQuality`` has no crowd regions, subtracts the
ground truth's pixels predicted as void from the union, and does not count a ground-truth segment mostly
predicted as void as a false negative, so it disagrees with panopticapi (tests/metrics/test_panoptic_quality.py
shows it on a fixture). panopticapi itself is not a maintained package (no release on PyPI).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from vitadapter.metrics.segmentation import _fmt, _markdown

VOID = 0
_OFFSET = 256**3  # segment ids fit in a PNG's three 8-bit channels, so gt * _OFFSET + pred is unique per pair
_MATCH_IOU = 0.5
_IGNORED_FRACTION = 0.5
_KINDS = (("", "All"), ("_th", "Things"), ("_st", "Stuff"))


def _segment_table(segments: Sequence[Mapping[str, Any]], what: str, num_classes: int,
                   with_crowd: bool) -> dict[int, tuple[int, bool]]:
    """``{segment id: (class, iscrowd)}``, or a ValueError for a repeated / zero id or a class out of range."""
    table: dict[int, tuple[int, bool]] = {}
    for segment in segments:
        segment_id, label = int(segment["id"]), int(segment["category_id"])
        if segment_id == VOID or segment_id in table:
            raise ValueError(f"{what}: segment id {segment_id} is {'void (0)' if segment_id == VOID else 'repeated'}")
        if not 0 <= label < num_classes:
            raise ValueError(f"{what}: segment {segment_id} has class {label}, outside 0..{num_classes - 1}")
        table[segment_id] = (label, bool(segment.get("iscrowd", 0)) if with_crowd else False)
    return table


def _areas(ids: Tensor, table: Mapping[int, Any], what: str) -> dict[int, int]:
    """Pixel count of each listed segment; a ValueError when the map and the list disagree."""
    values, counts = torch.unique(ids, return_counts=True)
    areas = {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist()) if v != VOID}
    unlisted, absent = sorted(set(areas) - set(table)), sorted(set(table) - set(areas))
    if unlisted or absent:
        raise ValueError(f"{what}: segment ids {unlisted} are in the map but not in its segments, "
                         f"{absent} in its segments but not in the map")
    return areas


def panoptic_image_stats(pred_ids: Tensor, pred_segments: Sequence[Mapping[str, Any]], gt_ids: Tensor,
                         gt_segments: Sequence[Mapping[str, Any]], num_classes: int,
                         name: str | None = None) -> tuple[list[float], list[int], list[int], list[int]]:
    """Per-class IoU sum, TP, FP and FN of one image (see the module docstring).

    Args:
        pred_ids: H×W predicted segment ids (0: void).
        pred_segments: ``{"id", "category_id"}`` per predicted segment, classes 0..K-1.
        gt_ids: H×W ground-truth segment ids (0: void).
        gt_segments: ``{"id", "category_id", "iscrowd"}`` per ground-truth segment.
        num_classes: K.
        name: The image, for error messages.

    Returns:
        Four lists of K values: IoU sum, TP, FP, FN.
    """
    where = f"image {name}" if name is not None else "panoptic image"
    if pred_ids.shape != gt_ids.shape or pred_ids.dim() != 2:
        raise ValueError(f"{where}: prediction {tuple(pred_ids.shape)} and ground truth {tuple(gt_ids.shape)} must be "
                         "H×W segment-id maps of one size (resize the prediction to the original image)")
    pred_table = _segment_table(pred_segments, f"{where}, prediction", num_classes, with_crowd=False)
    gt_table = _segment_table(gt_segments, f"{where}, ground truth", num_classes, with_crowd=True)
    pred_ids, gt_ids = pred_ids.detach().cpu().long(), gt_ids.detach().cpu().long()
    pred_area = _areas(pred_ids, pred_table, f"{where}, prediction")
    gt_area = _areas(gt_ids, gt_table, f"{where}, ground truth")
    pairs, counts = torch.unique(gt_ids.reshape(-1) * _OFFSET + pred_ids.reshape(-1), return_counts=True)
    overlap = {(g, p): c for g, p, c in zip((pairs // _OFFSET).tolist(), (pairs % _OFFSET).tolist(), counts.tolist())}

    iou_sum, tp, fp, fn = [0.0] * num_classes, [0] * num_classes, [0] * num_classes, [0] * num_classes
    gt_matched, pred_matched = set(), set()
    for (g, p), intersection in overlap.items():
        if g == VOID or p == VOID or gt_table[g][1] or gt_table[g][0] != pred_table[p][0]:
            continue
        union = pred_area[p] + gt_area[g] - intersection - overlap.get((VOID, p), 0)
        iou = intersection / union
        if iou > _MATCH_IOU:
            label = gt_table[g][0]
            tp[label] += 1
            iou_sum[label] += iou
            gt_matched.add(g)
            pred_matched.add(p)
    crowds: dict[int, list[int]] = {}
    for g, (label, iscrowd) in gt_table.items():
        if iscrowd:
            crowds.setdefault(label, []).append(g)
        elif g not in gt_matched:
            fn[label] += 1
    for p, (label, _) in pred_table.items():
        if p in pred_matched:
            continue
        # panopticapi keeps one crowd segment per class and image (COCO merges a class's crowds into one);
        # summing over all of them is the same there and still right for files with several
        ignored = overlap.get((VOID, p), 0) + sum(overlap.get((g, p), 0) for g in crowds.get(label, ()))
        if ignored / pred_area[p] <= _IGNORED_FRACTION:
            fp[label] += 1
    return iou_sum, tp, fp, fn


class PanopticMetrics(Metric):
    """Dataset-level PQ, SQ and RQ (all classes, things, stuff, per class), as panopticapi computes them.

    Args:
        isthing: Per class (0..K-1), whether it is a thing; K is its length.
        class_names: Optional K class names, kept for reporting (``self.class_names``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    iou_sum: Tensor
    tp: Tensor
    fp: Tensor
    fn: Tensor

    def __init__(self, isthing: Sequence[bool], class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if not len(isthing):
            raise ValueError("isthing must name at least one class")
        if class_names is not None and len(class_names) != len(isthing):
            raise ValueError(f"got {len(class_names)} class names for {len(isthing)} classes")
        self.num_classes = len(isthing)
        self.isthing = [bool(t) for t in isthing]
        self.class_names = list(class_names) if class_names is not None else None
        self.add_state("iou_sum", default=torch.zeros(self.num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        for state in ("tp", "fp", "fn"):
            self.add_state(state, default=torch.zeros(self.num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred_ids: Tensor, pred_segments: Sequence[Mapping[str, Any]], gt_ids: Tensor,
               gt_segments: Sequence[Mapping[str, Any]], name: str | None = None) -> None:
        """Accumulate one image (see ``panoptic_image_stats`` for the arguments)."""
        stats = panoptic_image_stats(pred_ids, pred_segments, gt_ids, gt_segments, self.num_classes, name)
        for state, values in zip((self.iou_sum, self.tp, self.fp, self.fn), stats):
            state += torch.tensor(values, dtype=state.dtype, device=state.device)

    def compute(self) -> dict[str, Tensor]:
        """Reduce the sums to PQ, SQ and RQ in percent.

        Returns:
            ``PQ``, ``SQ``, ``RQ`` and the same with ``_th`` (things) and ``_st`` (stuff) suffixes (0-dim float64,
            NaN when no class counts); ``n``, ``n_th``, ``n_st`` (classes counted); ``PQ_per_class``,
            ``SQ_per_class``, ``RQ_per_class`` (K, NaN for classes with no TP, FP or FN); ``iou_sum``, ``tp``,
            ``fp``, ``fn`` (the per-class sums).
        """
        tp, fp, fn = self.tp.double(), self.fp.double(), self.fn.double()
        present = (self.tp + self.fp + self.fn) > 0
        denominator = (tp + 0.5 * fp + 0.5 * fn).clamp_min(1e-12)
        nan = torch.full_like(tp, math.nan)
        per_class = {
            "PQ": torch.where(present, self.iou_sum / denominator, nan) * 100,
            "SQ": torch.where(present, torch.where(self.tp > 0, self.iou_sum / tp.clamp_min(1), 0.0), nan) * 100,
            "RQ": torch.where(present, tp / denominator, nan) * 100,
        }
        things = torch.tensor(self.isthing, device=tp.device)
        results: dict[str, Tensor] = {}
        for suffix, selected in (("", torch.ones_like(things)), ("_th", things), ("_st", ~things)):
            counted = present & selected
            results[f"n{suffix}"] = counted.sum()
            for key, values in per_class.items():
                results[f"{key}{suffix}"] = values[counted].mean() if counted.any() else nan[0].clone()
        results.update({f"{key}_per_class": values for key, values in per_class.items()})
        results.update(iou_sum=self.iou_sum.clone(), tp=self.tp.clone(), fp=self.fp.clone(), fn=self.fn.clone())
        return results


def format_panoptic_table(results: Mapping[str, Tensor], class_names: Sequence[str], isthing: Sequence[bool]) -> str:
    """PQ/SQ/RQ per class (with kind, TP, FP, FN), then the All/Things/Stuff summary, as detectron2 prints it.

    Args:
        results: Output of :meth:`PanopticMetrics.compute`.
        class_names: One name per class.
        isthing: Per class, whether it is a thing.

    Returns:
        Markdown tables (also readable as plain text), values in percent with 2 decimals.
    """
    if len(class_names) != len(results["tp"]):
        raise ValueError(f"got {len(class_names)} class names for {len(results['tp'])} classes")
    rows = [[str(name), "thing" if thing else "stuff",
             *(_fmt(float(results[f"{k}_per_class"][i])) for k in ("PQ", "SQ", "RQ")),
             *(str(int(results[k][i])) for k in ("tp", "fp", "fn"))]
            for i, (name, thing) in enumerate(zip(class_names, isthing))]
    summary = [[label, *(_fmt(float(results[f"{k}{suffix}"])) for k in ("PQ", "SQ", "RQ")),
                str(int(results[f"n{suffix}"]))] for suffix, label in _KINDS]
    lines = ["per class results:", *_markdown(["Class", "Kind", "PQ", "SQ", "RQ", "TP", "FP", "FN"], rows), ""]
    lines += ["Summary:", *_markdown(["", "PQ", "SQ", "RQ", "#classes"], summary)]
    return "\n".join(lines)


def flatten_panoptic_results(results: Mapping[str, Tensor], class_names: Sequence[str],
                             prefix: str = "val/") -> dict[str, float]:
    """Flatten metric results into scalar entries for loggers and JSON files.

    Args:
        results: Output of :meth:`PanopticMetrics.compute`.
        class_names: One name per class.
        prefix: Prepended to every key.

    Returns:
        ``prefix`` + ``PQ``, ``SQ``, ``RQ``, ``PQ_th``, ..., ``RQ_st`` and ``PQ/<class>``, ``SQ/<class>``,
        ``RQ/<class>`` as Python floats (NaN where undefined).
    """
    if len(class_names) != len(results["tp"]):
        raise ValueError(f"got {len(class_names)} class names for {len(results['tp'])} classes")
    flat = {f"{prefix}{k}{suffix}": float(results[f"{k}{suffix}"]) for suffix, _ in _KINDS for k in ("PQ", "SQ", "RQ")}
    for key in ("PQ", "SQ", "RQ"):
        flat.update({f"{prefix}{key}/{n}": float(v) for n, v in zip(class_names, results[f"{key}_per_class"].tolist())})
    return flat
