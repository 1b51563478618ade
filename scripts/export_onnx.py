"""Export a trained segmentation or depth model to ONNX: image batch in, class logits (output `logits`, B x K x H x W)
or depths in metres (output `depth`, B x 1 x H x W) at the image's size out.

    python scripts/export_onnx.py ckpt_path=outputs/train/runs/<date>/checkpoints/last.ckpt output=model.onnx

Options: `include_normalization=true` (the graph takes 0..255 RGB and normalises it itself), `opset=N`
(default: the exporter's), `check=false` (skip the onnxruntime-vs-PyTorch check printed after the export).
Further `key=value` arguments change the checkpoint's restored config (e.g. model.backbone.checkpoint=PATH).
The PEFT method is merged into the weights where it merges (LoRA, DoRA, peft tuners, SSF); other methods
export as they run. Batch, height and width are dynamic; see vitadapter/export/onnx_export.py.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPTIONS = {"include_normalization": "false", "opset": "", "check": "true"}
CHECK_SIZES = ((1, 512, 512), (2, 384, 640), (1, 333, 517))  # batch, height, width: square, batch 2, odd sizes


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """`ckpt_path=`, `output=` and the OPTIONS as a dict (checked), and the remaining `key=value` config overrides."""
    from vitadapter.export.arguments import parse_key_values

    values, overrides = parse_key_values(argv, __doc__, options=OPTIONS)
    for key in ("include_normalization", "check"):
        if values[key].lower() not in ("true", "false"):
            sys.exit(f"{key}= takes true or false, got {values[key]!r}")
    if values["opset"] and not values["opset"].isdigit():
        sys.exit(f"opset= takes an integer, got {values['opset']!r}")
    return values, overrides


def main(argv: list[str] | None = None) -> None:
    """Runs the export, prints the metadata and (unless check=false) the max |onnxruntime - PyTorch| difference."""
    values, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    for noisy in ("onnx_ir", "onnxscript"):  # one line per deduplicated initializer
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from vitadapter.export.onnx_export import export_onnx, max_abs_difference

    export = export_onnx(values["ckpt_path"], values["output"], overrides,
                         include_normalization=values["include_normalization"].lower() == "true",
                         opset=int(values["opset"]) if values["opset"] else None)
    output = export.module.output_name
    print(f"wrote {export.path} (opset {export.opset}); input 'image', output '{output}'")
    for key in ("input", "output", "size_note", "mean", "std", "num_classes", "min_depth", "max_depth"):
        if key in export.metadata:
            print(f"  {key}: {export.metadata[key]}")
    if values["check"].lower() == "true":
        for size, diff in max_abs_difference(export, CHECK_SIZES).items():
            print(f"  onnxruntime vs PyTorch at {size}: max |{output} difference| {diff:.2e}")


if __name__ == "__main__":
    main()
