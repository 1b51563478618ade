"""Draw a checkpoint's predictions: `python predict.py ckpt_path=PATH input=IMAGE_OR_FOLDER output=DIR`.

Detection checkpoints: boxes, masks and class names; segmentation checkpoints: a colour-coded class map
with a legend, blended over the image. The model and data configuration are restored from the checkpoint.
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Runs the prediction."""
    from vitadapter.run.predict import run_prediction

    run_prediction(cfg)


if __name__ == "__main__":
    from vitadapter.run.evaluate import register_restored_config

    register_restored_config(sys.argv[1:])  # before Hydra composes the config
    main()
