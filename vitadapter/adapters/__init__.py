"""Parameter-efficient modules injected into the frozen ViT blocks, registered by name."""

from vitadapter.adapters.base import AdaptedSublayer, AdapterConfig
from vitadapter.adapters.bottleneck import BottleneckAdapter, BottleneckAdapterConfig
from vitadapter.adapters.registry import ADAPTERS, inject_adapters, register_adapter

__all__ = [
    "ADAPTERS",
    "AdaptedSublayer",
    "AdapterConfig",
    "BottleneckAdapter",
    "BottleneckAdapterConfig",
    "inject_adapters",
    "register_adapter",
]
