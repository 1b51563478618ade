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
