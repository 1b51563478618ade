"""Mask2Former (Cheng et al., CVPR 2022): the head, its loss and the post-processing of its three inference modes
(semantic, instance, panoptic). transformers is imported only when a head is built."""

from vitadapter.heads.mask2former.head import LOSS_DEFAULTS, Mask2FormerHead, QueryPredictions
from vitadapter.heads.mask2former.loss import MaskClassificationLoss
from vitadapter.heads.mask2former.postprocess import (instance_predictions, mask_boxes, panoptic_predictions,
                                                      semantic_scores)
from vitadapter.heads.mask2former.targets import MaskTargets, semantic_targets

__all__ = [
    "LOSS_DEFAULTS",
    "Mask2FormerHead",
    "MaskClassificationLoss",
    "MaskTargets",
    "QueryPredictions",
    "instance_predictions",
    "mask_boxes",
    "panoptic_predictions",
    "semantic_scores",
    "semantic_targets",
]
