"""Evaluation metrics: dataset-level segmentation mIoU/aAcc/mAcc, COCO AP, per-image depth metrics."""

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

# monocular depth: AbsRel, RMSE, delta < 1.25, ... per image, averaged over images
from vitadapter.metrics.depth import DepthMetrics, flatten_depth_results, format_depth_table  # noqa: E402

__all__ += ["DepthMetrics", "flatten_depth_results", "format_depth_table"]

# panoptic quality (PQ, SQ, RQ) as panopticapi computes it
from vitadapter.metrics.panoptic import (  # noqa: E402
    PanopticMetrics,
    flatten_panoptic_results,
    format_panoptic_table,
    panoptic_image_stats,
)
from vitadapter.metrics.panoptic_files import evaluate_panoptic_files  # noqa: E402

__all__ += [
    "PanopticMetrics",
    "evaluate_panoptic_files",
    "flatten_panoptic_results",
    "format_panoptic_table",
    "panoptic_image_stats",
]
