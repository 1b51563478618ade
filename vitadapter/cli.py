"""The commands `vitadapter-train`, `vitadapter-eval` and `vitadapter-predict` (and the repository's train.py,
eval.py and predict.py, which call them): Hydra entry points over the configs shipped in `vitadapter/configs`.

Outputs and the default data folder are under PROJECT_ROOT: the current directory for the installed
commands, the repository for its scripts (which set it before calling).
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

CONFIG_PATH = "configs"  # relative to this file: vitadapter/configs


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _train(cfg: DictConfig) -> float | None:
    from vitadapter.run.train import run_training  # after Hydra parsed the CLI: `--help` stays fast

    metrics = run_training(cfg)
    return metrics.get(cfg.monitor.metric)  # for Hydra sweepers


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _evaluate(cfg: DictConfig) -> None:
    from vitadapter.run.evaluate import run_evaluation

    run_evaluation(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def _predict(cfg: DictConfig) -> None:
    from vitadapter.run.predict import run_prediction

    run_prediction(cfg)


def _from_checkpoint(main: object) -> None:
    from vitadapter.run.evaluate import register_restored_config

    register_restored_config(sys.argv[1:])  # the checkpoint's model/data config, before Hydra composes
    main()


def train() -> None:
    """Train adapters, neck and head on a frozen ViT: `vitadapter-train [experiment=NAME] [key=value ...]`."""
    os.environ.setdefault("PROJECT_ROOT", os.getcwd())
    _train()


def evaluate() -> None:
    """Evaluate a checkpoint: `vitadapter-eval ckpt_path=PATH [data.root=...] [eval.save_predictions=true]`."""
    os.environ.setdefault("PROJECT_ROOT", os.getcwd())
    _from_checkpoint(_evaluate)


def predict() -> None:
    """Draw a checkpoint's predictions: `vitadapter-predict ckpt_path=PATH input=IMAGE_OR_FOLDER output=DIR`."""
    os.environ.setdefault("PROJECT_ROOT", os.getcwd())
    _from_checkpoint(_predict)
