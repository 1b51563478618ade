"""The config an entry point composes, composed outside it (scripts that predict or inspect a run before it runs)."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def train_config(overrides: list[str], output_dir: str | Path) -> DictConfig:
    """The config `python train.py OVERRIDES` runs (Hydra's runtime keys resolved, then dropped).

    Args:
        overrides: train.py's command-line overrides (`key=value`, `group=option`).
        output_dir: what `paths.output_dir` becomes (Hydra's run directory in a real run).
    """
    os.environ.setdefault("PROJECT_ROOT", os.getcwd())
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg
