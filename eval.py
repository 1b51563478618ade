"""Evaluate a checkpoint: `python eval.py ckpt_path=PATH [data.root=...] [eval.save_predictions=true]`.

The model and data configuration are restored from the checkpoint; any of their keys can be overridden.
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Runs the evaluation."""
    from vitadapter.run.evaluate import run_evaluation

    run_evaluation(cfg)


if __name__ == "__main__":
    from vitadapter.run.evaluate import register_restored_config

    register_restored_config(sys.argv[1:])  # before Hydra composes the config
    main()
