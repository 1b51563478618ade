"""Frozen timm ViT backbones."""

from vitadapter.backbone.fingerprint import state_fingerprint
from vitadapter.backbone.vit import ViTBackbone, create_timm_vit, evenly_spaced_taps

__all__ = ["ViTBackbone", "create_timm_vit", "evenly_spaced_taps", "state_fingerprint"]
