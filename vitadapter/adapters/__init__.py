"""Parameter-efficient modules injected into the frozen ViT blocks, registered by name."""

from vitadapter.adapters.base import AdaptedSublayer, AdapterConfig, SpatialAdapter
from vitadapter.adapters.bottleneck import BottleneckAdapter, BottleneckAdapterConfig
from vitadapter.adapters.convpass import ConvpassAdapter, ConvpassAdapterConfig
from vitadapter.adapters.registry import ADAPTERS, inject_adapters, register_adapter

__all__ = [
    "ADAPTERS",
    "AdaptedSublayer",
    "AdapterConfig",
    "BottleneckAdapter",
    "BottleneckAdapterConfig",
    "ConvpassAdapter",
    "ConvpassAdapterConfig",
    "SpatialAdapter",
    "inject_adapters",
    "register_adapter",
]
