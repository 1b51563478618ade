"""Memory of serving two tasks on one frozen ViT (`MultiTaskModel`) against one task, and against two models.

Builds the shipped experiments `ade20k_seg` (UPerNet) and `coco_det` (Mask R-CNN), both ViT-B/16 with
bottleneck adapters, from a seeded random ViT (pretrained=false: same tensors, same fingerprint; real
weights take the same memory), and reports

- tensor bytes (distinct storages, exact): one task, both tasks sharing the ViT, both as separate models;
- the process's resident memory after each step (Linux; indicative: it includes the libraries' code).

    python scripts/benchmark_multitask.py
    python scripts/benchmark_multitask.py --experiments ade20k_seg coco_det ade20k_seg_vit_adapter
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
from pathlib import Path

from hydra import compose, initialize_config_dir

from vitadapter.multitask import MultiTaskModel, tensor_bytes
from vitadapter.run.build import build_datamodule_and_task

CONFIG_DIR = Path(__file__).resolve().parents[1] / "vitadapter" / "configs"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", default=["ade20k_seg", "coco_det"],
                        help="experiments served together (the first is the one-task baseline)")
    return parser.parse_args()


def resident_mb() -> float:
    """The process's resident set size in MB (Linux), after handing freed heap memory back to the system
    (a task is built with a ViT of its own, which adding it to the model frees)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def build(experiment: str):
    """The experiment's task with a random (seeded) ViT; no dataset is read."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}", "model.backbone.pretrained=false",
                                f"model.task_name={experiment}"])
    return build_datamodule_and_task(cfg)[1].eval()


def main() -> None:
    args = parse_args()
    model = MultiTaskModel()
    separate_bytes = 0
    rows = [("start", 0, 0, resident_mb())]
    for experiment in args.experiments:
        task = build(experiment)
        separate_bytes += tensor_bytes([*task.parameters(), *task.buffers()])
        model.add_task(task)
        del task
        rows.append((f"+ {experiment}", model.memory_bytes()["total"], separate_bytes, resident_mb()))
    memory = model.memory_bytes()
    print(f"frozen ViT shared once: {memory['shared'] / 1e6:.1f} MB; each task's own tensors: "
          + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in memory["tasks"].items()))
    print("| tasks loaded | tensors, one shared ViT | tensors, separate models | process RSS |")
    print("|---|---:|---:|---:|")
    for label, shared, separate, rss in rows:
        print(f"| {label} | {shared / 1e6:.1f} MB | {separate / 1e6:.1f} MB | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
