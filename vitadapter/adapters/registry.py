"""Adapter registry: adding a PEFT method is one file plus one `@register_adapter` line."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vitadapter.adapters.base import AdaptedSublayer, AdapterConfig

ADAPTERS: dict[str, type[AdapterConfig]] = {}


def register_adapter(name: str) -> Callable[[type[AdapterConfig]], type[AdapterConfig]]:
    """Class decorator that registers an adapter config under `name`."""

    def register(config_cls: type[AdapterConfig]) -> type[AdapterConfig]:
        if name in ADAPTERS:
            raise ValueError(f"adapter {name!r} is registered twice")
        ADAPTERS[name] = config_cls
        return config_cls

    return register


def inject_adapters(vit: nn.Module, config: AdapterConfig) -> list[nn.Module]:
    """Wraps the chosen sublayers of the chosen blocks with freshly built adapters.

    Args:
        vit: a timm ViT with a `blocks` sequence whose blocks own `attn` and `mlp`.
        config: where to put adapters and how to build them.

    Returns:
        The new adapter modules, in block order.
    """
    blocks = list(vit.blocks)
    depth = len(blocks)
    layers = range(depth) if config.layers is None else config.layers
    if any(not -depth <= i < depth for i in layers):
        raise ValueError(f"model.adapter.layers={list(layers)} outside the {depth} blocks of the backbone")
    dim = vit.embed_dim
    adapters = []
    for index in sorted({i % depth for i in layers}):
        block = blocks[index]
        for position in config.position:
            sublayer = getattr(block, position, None)
            if sublayer is None:
                raise ValueError(f"block {index} ({type(block).__name__}) has no `{position}` sublayer to adapt")
            if isinstance(sublayer, AdaptedSublayer):
                raise ValueError(f"block {index}.{position} already has an adapter")
            adapter = config.build(dim, getattr(vit, "num_prefix_tokens", 1))
            setattr(block, position, AdaptedSublayer(sublayer, adapter, config.mode))
            adapters.append(adapter)
    return adapters
