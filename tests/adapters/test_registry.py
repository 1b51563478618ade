"""The method registry is what the configs use: one file + one registration adds a method."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import CONFIGS
from vitadapter.adapters import METHODS, build_method, import_all_methods

ADAPTER_CONFIGS = sorted((CONFIGS / "model" / "adapter").glob("*.yaml"))


def test_every_registered_method_ships_a_config_built_through_the_registry() -> None:
    import_all_methods()
    nodes = {p.stem: yaml.safe_load(p.read_text()) for p in ADAPTER_CONFIGS}
    # a config in package `model` (full.yaml, which also sets model.optimizer.layer_decay) holds the method as `adapter`
    nodes = {stem: node.get("adapter", node) for stem, node in nodes.items()}
    named = {stem: node["name"] for stem, node in nodes.items() if "name" in node}
    assert all(nodes[stem]["_target_"] == "vitadapter.adapters.build_method" for stem in named)
    assert set(METHODS) == set(named.values())


def test_unknown_method_and_unknown_field_are_refused() -> None:
    with pytest.raises(ValueError, match="not a PEFT method"):
        build_method("lorra")
    with pytest.raises(ValueError, match="botleneck_dim"):
        build_method("bottleneck", botleneck_dim=8)
