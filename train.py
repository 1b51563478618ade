"""Train adapters, neck and head on a frozen ViT: `python train.py [experiment=NAME] [key=value ...]`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Runs one training job; returns the monitored metric (for Hydra sweepers)."""
    from vitadapter.run.train import run_training  # after Hydra parsed the CLI: `--help` stays fast

    metrics = run_training(cfg)
    return metrics.get(cfg.monitor.metric)


if __name__ == "__main__":
    main()
