"""Export a trained model's ViT as a plain timm checkpoint, its PEFT method merged into the weights.

    python scripts/export_merged.py ckpt_path=outputs/train/runs/<date>/checkpoints/last.ckpt output=vit.safetensors

Further `key=value` arguments change the checkpoint's restored config (e.g. model.backbone.checkpoint=PATH
when the pretrained weights moved). The file loads with timm alone; the script prints the call.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str]) -> tuple[str, str, list[str]]:
    """`ckpt_path=...`, `output=...` and the remaining `key=value` overrides."""
    from vitadapter.export.arguments import parse_key_values

    values, overrides = parse_key_values(argv, __doc__)
    return values["ckpt_path"], values["output"], overrides


def main(argv: list[str] | None = None) -> None:
    """Runs the export and prints how to load the file with timm."""
    ckpt_path, output, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    from vitadapter.export import export_merged

    path, call = export_merged(ckpt_path, output, overrides)
    print(f"wrote {path}")
    print(f"load it with: {call}")


if __name__ == "__main__":
    main()
