"""The `+method=` presets that sweeps use: each sets its PEFT method (and ViT-Adapter its neck) over any experiment."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from tests.helpers import CONFIGS, compose_at

PRESETS = sorted(p.stem for p in (CONFIGS / "method").glob("*.yaml"))
ADAPTERS = sorted(p.stem for p in (CONFIGS / "model" / "adapter").glob("*.yaml"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DictConfig:
    return compose_at("train", ["experiment=demo_seg_pretrained"], tmp_path_factory.mktemp("demo"))


def test_every_shipped_method_but_the_compositions_has_a_preset() -> None:
    # fusion and peft need settings of their own (sources, a tuner); vpt_shallow is VPT's variant (VPT-deep runs)
    assert set(PRESETS) == (set(ADAPTERS) - {"fusion", "peft", "vpt_shallow"}) | {"vit_adapter"}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_replaces_the_experiments_method(preset: str, demo: DictConfig, tmp_path: Path) -> None:
    cfg = compose_at("train", ["experiment=demo_seg_pretrained", f"+method={preset}"], tmp_path)
    if preset == "vit_adapter":  # demo_seg_vit_adapter's neck settings
        assert cfg.model.adapter.name == "none" and cfg.model.neck._target_.endswith("ViTAdapterNeck")
        assert not cfg.model.neck.inject and cfg.model.neck.prior_channels == 32 and cfg.model.optimizer.lr == 2e-3
    else:
        assert cfg.model.adapter == compose_at("train", [f"model/adapter={preset}"], tmp_path).model.adapter
        assert cfg.model.neck == demo.model.neck
        optimizer = {k: v for k, v in cfg.model.optimizer.items() if k != "layer_decay"}
        assert optimizer == {k: v for k, v in demo.model.optimizer.items() if k != "layer_decay"}
        assert cfg.model.optimizer.layer_decay == (0.65 if preset == "full" else None)  # full's own setting
    # everything else is the experiment's (compared unresolved: the output folders differ)
    for key in ("model.backbone", "model.head", "data", "trainer"):
        assert OmegaConf.to_container(OmegaConf.select(cfg, key)) == OmegaConf.to_container(OmegaConf.select(demo, key))
