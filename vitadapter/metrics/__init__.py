"""Evaluation metrics: dataset-level segmentation mIoU/aAcc/mAcc."""

from vitadapter.metrics.segmentation import (
    LabelRangeError,
    SegmentationMetrics,
    flatten_segmentation_results,
    format_segmentation_table,
)

__all__ = [
    "LabelRangeError",
    "SegmentationMetrics",
    "flatten_segmentation_results",
    "format_segmentation_table",
]

# COCO box / mask AP (pycocotools)
from vitadapter.metrics.coco import COCOEvaluator, evaluate_results_file  # noqa: E402

__all__ += ["COCOEvaluator", "evaluate_results_file"]
