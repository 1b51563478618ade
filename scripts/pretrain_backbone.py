"""Pretrain the demos' tiny ViT on this machine and write its timm weights (no download needed).

    python scripts/pretrain_backbone.py                       # ~30 min on 2 CPU cores; writes
                                                              # data/pretrained/vit_tiny_p8_upstream.safetensors
    python scripts/pretrain_backbone.py trainer.max_steps=300 output=/tmp/quick.safetensors

The upstream task (synthetic shapes, textures, colours and backgrounds that no demo contains) is written once to
data/synthetic_upstream/. The weights load with `model/backbone=vit_tiny_shapes` (the demo_*_pretrained experiments)
or `model.backbone.checkpoint=FILE`, and with timm itself:
`timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=FILE), **model_kwargs)`.
Config: vitadapter/configs/pretrain.yaml; see docs/pretraining.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="../vitadapter/configs", config_name="pretrain")
def main(cfg: DictConfig) -> float | None:
    from vitadapter.pretrain.run import run_pretraining  # after Hydra parsed the CLI: `--help` stays fast

    metrics = run_pretraining(cfg)
    return metrics.get(cfg.monitor.metric)


if __name__ == "__main__":
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))  # data/ and outputs/ under the repository
    main()
