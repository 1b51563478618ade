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


def _ckpt_path_argument(argv: list[str]) -> str | None:
    for arg in argv:
        if arg.startswith("ckpt_path="):
            return arg.split("=", 1)[1]
    return None


if __name__ == "__main__":
    ckpt_path = _ckpt_path_argument(sys.argv[1:])
    if ckpt_path:  # before Hydra composes predict.yaml, so the restored keys can be overridden
        from vitadapter.run.evaluate import register_restored_config

        register_restored_config(ckpt_path)
    main()
