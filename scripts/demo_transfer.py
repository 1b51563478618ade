"""Transfer demo: do adapters trained on two source tasks help a new target task?

Sources: the shapes segmentation demo (`experiment=demo_seg`) and the shapes detection demo
(`experiment=demo_det`), both Convpass adapters on the same frozen random ViT. Target: the same eight
shapes in new colours and textures with 5x fewer training images (`data=synthetic_shapes_textured`),
trained for the same number of steps four ways, each with a new neck and head:

- fresh:        new Convpass adapters (what demo_seg does);
- fusion:       AdapterFusion over both sources' frozen adapters (`model/adapter=fusion`);
- finetune_seg: the segmentation source's adapters as the start, then trained (`init_from`);
- finetune_det: the detection source's adapters as the start, then trained.

Every run is a train.py process; the table (target val mIoU, trainable parameters, wall time) is
printed and written to OUT/transfer.md and OUT/transfer.json.

    python scripts/demo_transfer.py                                   # sources as shipped, 300 target steps
    python scripts/demo_transfer.py --seg-source S.ckpt --det-source D.ckpt --steps 300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "transfer", help="folder for every run")
    parser.add_argument("--steps", type=int, default=300, help="training steps of every target run")
    parser.add_argument("--seg-source", type=Path, help="a demo_seg checkpoint (default: train one as shipped)")
    parser.add_argument("--det-source", type=Path, help="a demo_det checkpoint (default: train one as shipped)")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every run (e.g. trainer.precision=32)")
    return parser.parse_args()


def train(run_dir: Path, overrides: list[str]) -> tuple[dict, float]:
    """Runs train.py into `run_dir` (reusing a finished run there); returns its metrics.json and minutes."""
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        start = time.monotonic()
        command = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
        (run_dir / "wall_minutes.txt").write_text(f"{(time.monotonic() - start) / 60:.2f}\n")
    minutes_file = run_dir / "wall_minutes.txt"
    minutes = float(minutes_file.read_text()) if minutes_file.is_file() else float("nan")
    return json.loads(metrics_file.read_text()), minutes


def source(path: Path | None, run_dir: Path, experiment: str, extra: list[str]) -> Path:
    """The given source checkpoint, or one trained by the shipped experiment."""
    if path is not None:
        return path.resolve()
    train(run_dir, [f"experiment={experiment}", *extra])
    return run_dir / "checkpoints" / "last.ckpt"


def main() -> None:
    args = parse_args()
    out = args.out.resolve()
    seg = source(args.seg_source, out / "source_seg", "demo_seg", args.overrides)
    det = source(args.det_source, out / "source_det", "demo_det", args.overrides)
    target = ["experiment=demo_seg", "data=synthetic_shapes_textured", f"trainer.max_steps={args.steps}",
              f"trainer.val_check_interval={args.steps}", *args.overrides]
    variants = {
        "fresh": [],
        "fusion": ["model/adapter=fusion", f"model.adapter.sources=[{seg},{det}]"],
        "finetune_seg": [f"init_from.ckpt_path={seg}"],
        "finetune_det": [f"init_from.ckpt_path={det}"],
    }
    rows = {}
    for name, extra in variants.items():
        metrics, minutes = train(out / name, [*target, *extra, f"model.task_name=target_{name}"])
        rows[name] = {"val/mIoU": metrics["val/mIoU"], "params/trainable": metrics["params/trainable"],
                      "params/trainable_adapter": metrics["params/trainable_adapter"], "minutes": minutes}
    best = max(("finetune_seg", "finetune_det"), key=lambda name: rows[name]["val/mIoU"])
    lines = [f"Target: data=synthetic_shapes_textured, {args.steps} steps each (sources: {seg}, {det})", "",
             "| target run | val mIoU | trainable params (adapter) | wall time |", "|---|---:|---:|---:|"]
    for name, row in rows.items():
        label = f"{name} (best single source)" if name == best else name
        lines.append(f"| {label} | {row['val/mIoU']:.2f} | {row['params/trainable']:,.0f} "
                     f"({row['params/trainable_adapter']:,.0f}) | {row['minutes']:.1f} min |")
    table = "\n".join(lines)
    print(table)
    (out / "transfer.md").write_text(table + "\n")
    (out / "transfer.json").write_text(json.dumps({"steps": args.steps, "sources": [str(seg), str(det)],
                                                   "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
