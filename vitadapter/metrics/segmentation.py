"""Dataset-level semantic segmentation metrics (mIoU, aAcc, mAcc), computed the mmseg way.

Per-class intersection and union are summed over the whole dataset before dividing, so the result
matches mmsegmentation's ``IoUMetric`` and torchmetrics' ``MulticlassJaccardIndex(average="macro")``
(not ``torchmetrics.segmentation.MeanIoU``, which averages per batch). The state is one
``num_classes x num_classes`` confusion matrix, summed across processes by torchmetrics under DDP.

Unlike mmseg (``torch.histc``) and detectron2 (``np.bincount``), labels outside ``[0, num_classes)``
that are not ``ignore_index`` are an error here, never silently dropped or miscounted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


class LabelRangeError(ValueError):
    """A label map holds values outside ``[0, num_classes)`` that are not ``ignore_index``."""


def _check_names(names: Sequence[str] | None, batch: int) -> None:
    if names is not None and len(names) != batch:
        raise ValueError(f"got {len(names)} names for a batch of {batch} label maps")


def _bad_values(values: Tensor, num_classes: int, ignore_index: int | None) -> list[int]:
    """Sorted distinct values outside ``[0, num_classes)``, excluding ``ignore_index``."""
    bad = (values < 0) | (values >= num_classes)
    if ignore_index is not None:
        bad &= values != ignore_index
    if not bool(bad.any()):
        return []
    return torch.unique(values[bad]).tolist()


class SegmentationMetrics(Metric):
    """Dataset-level per-class intersection/union the mmseg way.

    Args:
        num_classes: Number of classes K; valid labels are ``0..K-1``.
        ignore_index: Label value whose pixels are skipped (255 for ADE20K with
            ``reduce_zero_label``).
        class_names: Optional K class names, kept for reporting (``self.class_names``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: Tensor

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f"ignore_index={ignore_index} is a valid class id for num_classes={num_classes}; "
                "choose a value outside [0, num_classes), e.g. 255"
            )
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for num_classes={num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        # Rows are ground-truth classes, columns predicted classes.
        self.add_state(
            "confmat",
            default=torch.zeros(num_classes, num_classes, dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    def _validate(self, preds: Tensor, target: Tensor, names: Sequence[str] | None) -> None:
        if preds.shape != target.shape:
            raise ValueError(
                f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must have the same "
                "shape; pass class indices (argmax over the logits' class dim), not logits"
            )
        if preds.dim() not in (2, 3):
            raise ValueError(f"expected (H, W) or (B, H, W) maps, got shape {tuple(preds.shape)}")
        for name, t in (("preds", preds), ("target", target)):
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise ValueError(f"{name} must be an integer class-index tensor, got {t.dtype}")
        batch_target = target if target.dim() == 3 else target.unsqueeze(0)
        _check_names(names, batch_target.shape[0])
        if _bad_values(batch_target, self.num_classes, self.ignore_index):
            # Rare path: find every offending sample so the message names all the files.
            problems = []
            for i, sample in enumerate(batch_target):
                bad = _bad_values(sample, self.num_classes, self.ignore_index)
                if bad:
                    where = f"file {names[i]!r}" if names is not None else f"batch sample {i}"
                    problems.append(f"{where} contains values {bad}")
            raise LabelRangeError(
                f"label values outside [0, {self.num_classes}): {'; '.join(problems)} "
                f"(num_classes={self.num_classes}, ignore_index={self.ignore_index}). Check the "
                "dataset's num_classes and reduce_zero_label setting (ADE20K labels are 0..150 "
                "with 0 = 'other'; reduce_zero_label maps them to 255, 0..149)."
            )
        bad_preds = _bad_values(preds, self.num_classes, None)
        if bad_preds:
            raise ValueError(
                f"predictions contain class ids {bad_preds} outside [0, {self.num_classes}); "
                "the model's number of output channels does not match num_classes"
            )

    def update(self, preds: Tensor, target: Tensor, names: Sequence[str] | None = None) -> None:
        """Accumulate one prediction/label pair or batch.

        Args:
            preds: Predicted class ids, ``(H, W)`` or ``(B, H, W)`` integer tensor.
            target: Ground-truth class ids of the same shape; ``ignore_index`` pixels are skipped.
            names: Optional file name per sample, used in error messages.

        Raises:
            ValueError: Shapes differ, tensors are not integer, or predictions are out of range.
            LabelRangeError: A label is outside ``[0, num_classes)`` and not ``ignore_index``.
        """
        self._validate(preds, target, names)
        valid = target != self.ignore_index
        k = self.num_classes
        index = target[valid].long() * k + preds[valid].long()
        counts = torch.bincount(index, minlength=k * k)
        self.confmat += counts.view(k, k).to(self.confmat.device)

    def compute(self) -> dict[str, Tensor]:
        """Reduce the confusion matrix to dataset-level metrics.

        Returns:
            ``mIoU``, ``aAcc``, ``mAcc`` (0-dim float64, percent); ``IoU`` and ``Acc`` (per class,
            percent, NaN where the union / label area is zero); ``intersection``, ``union``,
            ``label_area``, ``pred_area`` (per-class int64 pixel counts).
        """
        confmat = self.confmat
        intersection = confmat.diagonal()
        label_area = confmat.sum(dim=1)
        pred_area = confmat.sum(dim=0)
        union = label_area + pred_area - intersection

        inter_f = intersection.double()
        nan = torch.tensor(math.nan, dtype=torch.float64, device=confmat.device)
        iou = torch.where(union > 0, inter_f / union.clamp_min(1).double(), nan) * 100
        acc = torch.where(label_area > 0, inter_f / label_area.clamp_min(1).double(), nan) * 100
        total = label_area.sum()
        a_acc = inter_f.sum() / total.double() * 100 if total > 0 else nan.clone()
        return {
            "mIoU": torch.nanmean(iou),
            "aAcc": a_acc,
            "mAcc": torch.nanmean(acc),
            "IoU": iou,
            "Acc": acc,
            "intersection": intersection.clone(),
            "union": union,
            "label_area": label_area,
            "pred_area": pred_area,
        }


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.2f}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Render a column-aligned markdown table: first column left, the others right-aligned."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


def format_segmentation_table(results: Mapping[str, Tensor], class_names: Sequence[str]) -> str:
    """Per-class IoU/Acc table followed by the aAcc/mIoU/mAcc summary, as mmseg prints it.

    Args:
        results: Output of :meth:`SegmentationMetrics.compute`.
        class_names: One name per class.

    Returns:
        A markdown table (also readable as plain text), values in percent with 2 decimals.
    """
    iou, acc = results["IoU"].tolist(), results["Acc"].tolist()
    if len(class_names) != len(iou):
        raise ValueError(f"got {len(class_names)} class names for {len(iou)} classes")
    per_class = [[str(n), _fmt(i), _fmt(a)] for n, i, a in zip(class_names, iou, acc)]
    summary = [[_fmt(float(results[k])) for k in ("aAcc", "mIoU", "mAcc")]]
    lines = ["per class results:", *_markdown(["Class", "IoU", "Acc"], per_class), ""]
    lines += ["Summary:", *_markdown(["aAcc", "mIoU", "mAcc"], summary)]
    return "\n".join(lines)


def flatten_segmentation_results(
    results: Mapping[str, Tensor], class_names: Sequence[str], prefix: str = "val/"
) -> dict[str, float]:
    """Flatten metric results into scalar entries for loggers and JSON files.

    Args:
        results: Output of :meth:`SegmentationMetrics.compute`.
        class_names: One name per class.
        prefix: Prepended to every key.

    Returns:
        ``prefix`` + ``mIoU``, ``aAcc``, ``mAcc``, ``IoU/<class>``, ``Acc/<class>`` mapped to Python
        floats; absent classes stay ``float("nan")``.
    """
    iou, acc = results["IoU"].tolist(), results["Acc"].tolist()
    if len(class_names) != len(iou):
        raise ValueError(f"got {len(class_names)} class names for {len(iou)} classes")
    flat = {f"{prefix}{k}": float(results[k]) for k in ("mIoU", "aAcc", "mAcc")}
    flat.update({f"{prefix}IoU/{n}": float(v) for n, v in zip(class_names, iou)})
    flat.update({f"{prefix}Acc/{n}": float(v) for n, v in zip(class_names, acc)})
    return flat
