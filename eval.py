"""Evaluate a checkpoint: `python eval.py ckpt_path=PATH [data.root=...] [eval.save_predictions=true]`.

The model and data configuration are restored from the checkpoint; any of their keys can be overridden.
"""

import os
from pathlib import Path

from vitadapter import cli

if __name__ == "__main__":
    # outputs and data/ under the repository, wherever the script is started from
    os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))
    cli.evaluate()
