"""Train adapters, neck and head on a frozen ViT: `python train.py [experiment=NAME] [key=value ...]`."""

import os
from pathlib import Path

from vitadapter import cli

if __name__ == "__main__":
    # outputs and data/ under the repository, wherever the script is started from
    os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))
    cli.train()
