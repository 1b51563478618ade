"""No method in the ViT: only the spatial module and the head train (the frozen-feature baseline).

As in DINOv2's linear and multi-scale evaluations, which keep the whole ViT frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from vitadapter.adapters.base import MethodConfig, MethodHooks
from vitadapter.adapters.registry import register_method

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone


@register_method("none")
@dataclass
class LinearProbeConfig(MethodConfig):
    """Adds nothing and unfreezes nothing."""

    per_block: ClassVar[bool] = False

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        return None
