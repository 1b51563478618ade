"""Prediction overlays: validation images drawn as image | ground truth | prediction, saved and sent to the trackers.

`draw.py` draws one picture (segmentation, detection, panoptic or depth); `prediction_overlays.py` holds
`PredictionOverlays`, the Lightning callback (`callbacks.prediction_overlays` in the config) that draws the first
validation images at every validation.
"""

from vitadapter.overlays.draw import PANEL_GAP, depth_overlay, detection_overlay, panoptic_overlay, segmentation_overlay
from vitadapter.overlays.prediction_overlays import PredictionOverlays

__all__ = ["PANEL_GAP", "PredictionOverlays", "depth_overlay", "detection_overlay", "panoptic_overlay",
           "segmentation_overlay"]
