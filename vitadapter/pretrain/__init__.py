"""Pretraining a backbone on this machine: the upstream synthetic task, its run and the weights file it writes.

No weights can be downloaded where this project is built, so `scripts/pretrain_backbone.py` pretrains the demos'
tiny ViT on a synthetic task the demos do not contain (`vitadapter.data.synthetic.upstream_shapes`) and writes a
timm-loadable safetensors file, which `model/backbone=vit_tiny_shapes` (or `model.backbone.checkpoint=FILE`) loads.
"""

from vitadapter.pretrain.backbone import MAKE_COMMAND, PretrainedBackboneMissing, pretrained_vit
from vitadapter.pretrain.task import PretrainTask
from vitadapter.pretrain.upstream_data import UpstreamDataModule, UpstreamDataset
from vitadapter.pretrain.weights_file import read_backbone_metadata, save_backbone_weights

__all__ = ["MAKE_COMMAND", "PretrainTask", "PretrainedBackboneMissing", "UpstreamDataModule", "UpstreamDataset",
           "pretrained_vit", "read_backbone_metadata", "save_backbone_weights"]
