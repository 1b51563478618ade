"""Frozen timm ViT backbones."""

from vitadapter.backbone.build import build_frozen_vit, create_timm_vit
from vitadapter.backbone.fingerprint import state_fingerprint
from vitadapter.backbone.taps import evenly_spaced_taps, resolve_taps
from vitadapter.backbone.vit import ViTBackbone

__all__ = ["ViTBackbone", "build_frozen_vit", "create_timm_vit", "evenly_spaced_taps", "resolve_taps",
           "state_fingerprint"]
