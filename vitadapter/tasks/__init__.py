"""LightningModules that compose backbone, adapters, neck and head."""

from vitadapter.tasks.depth import DepthTask
from vitadapter.tasks.detection import DetectionTask
from vitadapter.tasks.frozen_checkpoint import BackboneMismatchError, FrozenBackboneCheckpointing
from vitadapter.tasks.instance_segmentation import InstanceSegmentationTask
from vitadapter.tasks.lr_schedules import warmup_cosine_schedule, warmup_poly_schedule, warmup_step_schedule
from vitadapter.tasks.optim import trainable_param_groups
from vitadapter.tasks.panoptic import PanopticTask
from vitadapter.tasks.segmentation import SegmentationTask

__all__ = [
    "BackboneMismatchError",
    "DepthTask",
    "DetectionTask",
    "FrozenBackboneCheckpointing",
    "InstanceSegmentationTask",
    "PanopticTask",
    "SegmentationTask",
    "trainable_param_groups",
    "warmup_cosine_schedule",
    "warmup_poly_schedule",
    "warmup_step_schedule",
]
