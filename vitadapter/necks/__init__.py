"""Spatial modules: ViT tokens -> multi-scale feature pyramid."""

from vitadapter.necks.base import Neck, level_name
from vitadapter.necks.multilevel import MultiLevelNeck

__all__ = ["MultiLevelNeck", "Neck", "level_name"]
