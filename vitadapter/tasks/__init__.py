"""LightningModules that compose backbone, adapters, neck and head."""

from vitadapter.tasks.frozen_checkpoint import BackboneMismatchError, FrozenBackboneCheckpointing
from vitadapter.tasks.optim import trainable_param_groups, warmup_poly_schedule
from vitadapter.tasks.segmentation import SegmentationTask

__all__ = [
    "BackboneMismatchError",
    "FrozenBackboneCheckpointing",
    "SegmentationTask",
    "trainable_param_groups",
    "warmup_poly_schedule",
]
