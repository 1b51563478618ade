"""Decode heads: segmentation (UPerNet, Semantic FPN, Mask2Former, the auxiliary FCN head, the linear probe) and
depth (the linear bins probe, DPT)."""

from vitadapter.heads.conv_module import ConvNormAct, SegClassifier, resize_to
from vitadapter.heads.dpt import DPTHead
from vitadapter.heads.fcn import FCNHead
from vitadapter.heads.fpn import SemanticFPNHead
from vitadapter.heads.linear import LinearHead
from vitadapter.heads.linear_depth import LinearDepthHead
from vitadapter.heads.mask2former import Mask2FormerHead
from vitadapter.heads.upernet import UPerNetHead

__all__ = [
    "ConvNormAct",
    "DPTHead",
    "FCNHead",
    "LinearDepthHead",
    "LinearHead",
    "Mask2FormerHead",
    "SegClassifier",
    "SemanticFPNHead",
    "UPerNetHead",
    "resize_to",
]
