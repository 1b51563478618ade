"""Draw a checkpoint's predictions: `python predict.py ckpt_path=PATH input=IMAGE_OR_FOLDER output=DIR`.

Detection checkpoints: boxes, masks and class names; segmentation checkpoints: a colour-coded class map
with a legend, blended over the image; depth checkpoints: the image beside its depth map and a colour bar in
metres. The model and data configuration are restored from the checkpoint.
"""

import os
from pathlib import Path

from vitadapter import cli

if __name__ == "__main__":
    # outputs and data/ under the repository, wherever the script is started from
    os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))
    cli.predict()
