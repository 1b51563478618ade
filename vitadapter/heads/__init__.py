"""Segmentation decode heads: UPerNet, Semantic FPN and the auxiliary FCN head."""

from vitadapter.heads.conv_module import ConvNormAct, SegClassifier, resize_to
from vitadapter.heads.fcn import FCNHead
from vitadapter.heads.fpn import SemanticFPNHead
from vitadapter.heads.upernet import UPerNetHead

__all__ = [
    "ConvNormAct",
    "FCNHead",
    "SegClassifier",
    "SemanticFPNHead",
    "UPerNetHead",
    "resize_to",
]
