"""Spatial modules: ViT tokens -> multi-scale feature pyramid."""

from vitadapter.necks.base import InterleavedNeck, Neck, PyramidModule, level_name
from vitadapter.necks.multilevel import MultiLevelNeck
from vitadapter.necks.vit_adapter import ViTAdapterNeck

__all__ = ["InterleavedNeck", "MultiLevelNeck", "Neck", "PyramidModule", "ViTAdapterNeck", "level_name"]
