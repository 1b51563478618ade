"""Will it fit? The predicted peak memory of `python train.py OVERRIDES`, before anything is built for real.

Composes the config train.py would run with the same overrides and prints its peak memory by part: frozen weights,
trained weights, gradients, optimizer state, activations and (CPU) the process baseline, from a dry run on the meta
device and fake tensors (`vitadapter.cost.memory_estimate`): seconds, even for a 7B trunk.

    python scripts/estimate_memory.py experiment=ade20k_seg_dinov3 trainer=cpu data.batch_size=1 data.crop_size=224
    python scripts/estimate_memory.py experiment=ade20k_seg_dinov3 model/backbone=vit_7b_dinov3 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitadapter.cost.memory_estimate import estimate_training_memory  # noqa: E402
from vitadapter.run.compose import train_config  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="train.py's overrides (key=value, group=option)")
    parser.add_argument("--json", action="store_true", help="print the parts as JSON (bytes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the random-weights warning of a pretrained=false trunk is not news
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))  # data/ and outputs/ as train.py resolves them
    estimate = estimate_training_memory(train_config(args.overrides, ROOT / "outputs" / "estimate_memory"))
    print(json.dumps(estimate.as_dict()) if args.json else estimate.report())


if __name__ == "__main__":
    main()
