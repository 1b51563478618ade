"""PEFT methods: each file places one method on the frozen ViT and registers it by name."""

from vitadapter.adapters.base import MethodConfig, MethodHooks, SpatialAdapter
from vitadapter.adapters.bottleneck import BottleneckAdapter, BottleneckAdapterConfig
from vitadapter.adapters.convpass import ConvpassAdapter, ConvpassAdapterConfig
from vitadapter.adapters.registry import METHODS, build_method, import_all_methods, register_method
from vitadapter.adapters.residual_adapter import AdaptedBranch, ResidualAdapterConfig

__all__ = [
    "METHODS",
    "AdaptedBranch",
    "BottleneckAdapter",
    "BottleneckAdapterConfig",
    "ConvpassAdapter",
    "ConvpassAdapterConfig",
    "MethodConfig",
    "MethodHooks",
    "ResidualAdapterConfig",
    "SpatialAdapter",
    "build_method",
    "import_all_methods",
    "register_method",
]
