"""Spatial modules: ViT tokens -> multi-scale feature pyramid."""

from vitadapter.necks.base import InterleavedNeck, Neck, PyramidModule, level_name
from vitadapter.necks.multilevel import MultiLevelNeck
from vitadapter.necks.tokens import TappedTokens, TokensNeck
from vitadapter.necks.vit_adapter import ViTAdapterNeck

__all__ = [
    "InterleavedNeck",
    "MultiLevelNeck",
    "Neck",
    "PyramidModule",
    "TappedTokens",
    "TokensNeck",
    "ViTAdapterNeck",
    "level_name",
]
