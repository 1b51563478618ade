"""Decode heads: segmentation (UPerNet, Semantic FPN, the auxiliary FCN head, the linear probe) and depth (the
linear bins probe, DPT)."""

from vitadapter.heads.conv_module import ConvNormAct, SegClassifier, resize_to
from vitadapter.heads.dpt import DPTHead
from vitadapter.heads.fcn import FCNHead
from vitadapter.heads.fpn import SemanticFPNHead
from vitadapter.heads.linear import LinearHead
from vitadapter.heads.linear_depth import LinearDepthHead
from vitadapter.heads.upernet import UPerNetHead

__all__ = [
    "ConvNormAct",
    "DPTHead",
    "FCNHead",
    "LinearDepthHead",
    "LinearHead",
    "SegClassifier",
    "SemanticFPNHead",
    "UPerNetHead",
    "resize_to",
]
