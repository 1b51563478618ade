"""Lightning callbacks that write predictions and keep long runs safe.

Prediction writers (segmentation PNGs, depth PNGs, COCO results, COCO panoptic results), checkpointing,
preemption and exact resume. The callbacks of a concept that has its own folder live there: training cost in
`vitadapter.cost`, prediction overlays in `vitadapter.overlays`, the bad-sample report in
`vitadapter.data.bad_samples`.
"""

from vitadapter.callbacks.depth_writer import DepthPredictionWriter
from vitadapter.callbacks.panoptic_writer import PanopticPredictionWriter
from vitadapter.callbacks.segmentation_writer import SegmentationPredictionWriter

__all__ = ["DepthPredictionWriter", "PanopticPredictionWriter", "SegmentationPredictionWriter"]
