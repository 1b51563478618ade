"""Save a backbone's pretrained weights to a file, for machines without internet (air-gapped clusters).

    python scripts/fetch_weights.py model.backbone.name=vit_base_patch16_224.augreg_in21k [output=PATH]

Run it where the weights can be had (internet, or a filled Hugging Face cache): it builds the timm model
with its pretrained weights as training does and saves them as safetensors to `output` (default
weights/<name>.safetensors). Copy the file to the offline machine and train with the override it prints,
`model.backbone.checkpoint=PATH`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NAME_KEY = "model.backbone.name"


def parse_args(argv: list[str]) -> tuple[str, Path]:
    """`model.backbone.name=...` and `output=...` (default weights/<name>.safetensors)."""
    from vitadapter.export.arguments import parse_key_values

    values, rest = parse_key_values(argv, __doc__, required=(NAME_KEY,), options={"output": ""})
    if rest:
        raise SystemExit(f"unknown argument(s) {rest}: give {NAME_KEY}=... and optionally output=...")
    name = values[NAME_KEY]
    return name, Path(values["output"] or f"weights/{name}.safetensors")


def main(argv: list[str] | None = None) -> Path:
    """Builds the backbone with its pretrained weights, saves them and prints the override that loads them."""
    name, output = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    from safetensors.torch import save_file

    from vitadapter.backbone import create_timm_vit, state_fingerprint

    vit = create_timm_vit(name, pretrained=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensor.contiguous() for key, tensor in vit.state_dict().items()}, str(output),
              metadata={"timm_name": name})
    print(f"wrote {output} (weights of {name}, fingerprint {state_fingerprint(vit)[:16]})")
    print(f"train with: model.backbone.name={name} model.backbone.checkpoint={output.resolve()}")
    return output


if __name__ == "__main__":
    main()
