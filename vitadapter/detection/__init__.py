"""Object detection and instance segmentation: torchvision detectors on the encoder's pyramid.

`DetectionBackbone` (encoder + FPN, p2-p6) is the `backbone` torchvision detectors receive,
`BatchOnlyTransform` batches the datamodule's already resized and normalised images, and the
`build_*` functions (the `model/detector` config group's targets) return a `Detector`.
"""

from vitadapter.detection.backbone import DetectionBackbone, pyramid_level
from vitadapter.detection.detectors import (
    Detector,
    build_faster_rcnn,
    build_fcos,
    build_mask_rcnn,
    build_retinanet,
)
from vitadapter.detection.transform import BatchOnlyTransform

__all__ = [
    "BatchOnlyTransform",
    "DetectionBackbone",
    "Detector",
    "build_faster_rcnn",
    "build_fcos",
    "build_mask_rcnn",
    "build_retinanet",
    "pyramid_level",
]
