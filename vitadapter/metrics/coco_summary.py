"""COCO AP results as flat metrics and as the table detectron2 prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vitadapter.metrics.coco import METRIC_NAMES


def flatten_coco_results(
    results: Mapping[str, float | None], iou_types: Sequence[str], prefix: str = "val/"
) -> dict[str, float | None]:
    """Every AP of `iou_types` under `prefix`, e.g. `val/bbox_AP` ... `val/segm_APl`.

    Args:
        results: `COCOEvaluator.compute()` output (percent; None where undefined).
        iou_types: "bbox" and/or "segm".
        prefix: prepended to every key.

    Returns:
        Six entries per IoU type; a value the results lack (or COCOeval left undefined) is None.
    """
    return {f"{prefix}{t}_{name}": results.get(f"{t}_{name}") for t in iou_types for name in METRIC_NAMES}


def format_coco_table(results: Mapping[str, float | None], iou_types: Sequence[str]) -> str:
    """AP, AP50, AP75, APs, APm, APl per IoU type as a markdown table ("-": no ground truth of that size).

    Args:
        results: `COCOEvaluator.compute()` output.
        iou_types: the rows, e.g. ("bbox", "segm").

    Returns:
        The table, values in percent with 2 decimals.
    """
    header = ["Type", *METRIC_NAMES]
    rows = [[t, *(_fmt(results.get(f"{t}_{n}")) for n in METRIC_NAMES)] for t in iou_types]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
