"""The method registry: adding a PEFT method is one file in this package with `@register_method(name)`.

Configs name a method (`name: lora` in `vitadapter/configs/model/adapter/lora.yaml`) and `build_method` creates
its typed config from the registry, so a misspelt field is an error, not a silently ignored key.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from vitadapter.adapters.base import MethodConfig

METHODS: dict[str, type[MethodConfig]] = {}


def register_method(name: str) -> Callable[[type[MethodConfig]], type[MethodConfig]]:
    """Class decorator that registers a method config under `name`."""

    def register(config_cls: type[MethodConfig]) -> type[MethodConfig]:
        if name in METHODS and METHODS[name] is not config_cls:
            raise ValueError(f"PEFT method {name!r} is registered twice")
        config_cls.method_name = name
        METHODS[name] = config_cls
        return config_cls

    return register


def import_all_methods() -> dict[str, type[MethodConfig]]:
    """Imports every module of `vitadapter.adapters` so each method registers itself; returns the registry."""
    package = importlib.import_module("vitadapter.adapters")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"vitadapter.adapters.{module.name}")
    return METHODS


def build_method(name: str, **fields: Any) -> MethodConfig:
    """Creates the config of method `name` (e.g. from `model.adapter`).

    Args:
        name: a registered method name (`bottleneck`, `lora`, `vpt`, ...).
        **fields: the method's own fields; unknown ones are refused with the list of valid ones.

    Returns:
        The method's typed config.
    """
    methods = import_all_methods()
    if name not in methods:
        raise ValueError(f"model.adapter.name={name!r} is not a PEFT method; choose one of {sorted(methods)}")
    config_cls = methods[name]
    valid = set(config_cls.__dataclass_fields__)
    unknown = sorted(set(fields) - valid)
    if unknown:
        raise ValueError(f"model.adapter: {unknown} are not fields of method {name!r}; its fields: {sorted(valid)}")
    return config_cls(**fields)
