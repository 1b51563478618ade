"""Train-step time and memory of one segmentation model trained five ways.

Frozen ViT + bottleneck adapters (the multi-level neck), full fine-tuning, and the frozen ViT with the
ViT-Adapter neck with and without its injectors (`model.neck.inject`; without them the ViT runs as a
side network that records no autograd graph), the side network also with activation checkpointing in the
neck and the head (`model.neck.grad_checkpointing`, `model.head.grad_checkpointing`). After the table it
prints the side modes' saved activations against full fine-tuning's and what checkpointing costs in step
time. Every variant is built from the same composed config
(`experiment=ade20k_seg`) and measured in one process, one after the other, on random images. On CUDA
the peak is torch's allocator peak; on the CPU (no allocator statistics) the script reports what a
training step keeps alive instead: tensors saved for backward plus gradients plus AdamW state.

    python scripts/benchmark_seg.py                       # ViT-B/16, 512x512, batch 2, CPU
    python scripts/benchmark_seg.py --device cuda --precision bf16 --batch 8
    python scripts/benchmark_seg.py --variants full vit_adapter_side vit_adapter_side_cp
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitadapter.cost import SavedTensorCounter  # noqa: E402
from vitadapter.run.build import build_datamodule_and_task  # noqa: E402
from vitadapter.tasks import trainable_param_groups  # noqa: E402

SIDE = ["model/adapter=none", "model/neck=vit_adapter", "model.neck.inject=false"]
CHECKPOINTING = ["model.neck.grad_checkpointing=true", "model.head.grad_checkpointing=true"]
# name -> (table label, config overrides)
VARIANTS = {
    "bottleneck": ("frozen ViT + bottleneck adapters", ["model/adapter=bottleneck"]),
    "full": ("full fine-tuning", ["model/adapter=full"]),
    "vit_adapter": ("frozen ViT + ViT-Adapter (inject=true)", ["model/adapter=none", "model/neck=vit_adapter"]),
    "vit_adapter_side": ("frozen ViT + ViT-Adapter (inject=false)", SIDE),
    "vit_adapter_side_cp": ("frozen ViT + ViT-Adapter (inject=false, checkpointing)", SIDE + CHECKPOINTING),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vit_base_patch16_224", help="timm ViT name (random init)")
    parser.add_argument("--size", type=int, default=512, help="square crop size")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--head", default="upernet", choices=["upernet", "fpn"])
    parser.add_argument("--bottleneck-dim", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    return parser.parse_args()


def build_task(args: argparse.Namespace, variant: str) -> torch.nn.Module:
    overrides = [
        "experiment=ade20k_seg",
        f"model/head={args.head}",
        f"model.backbone.name={args.backbone}",
        "model.backbone.pretrained=false",
        f"data.crop_size={args.size}",
        *VARIANTS[variant][1],
    ]
    if variant == "bottleneck":
        overrides.append(f"model.adapter.bottleneck_dim={args.bottleneck_dim}")
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "vitadapter" / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    cfg.paths.output_dir = str(ROOT / "outputs" / "benchmark")
    return build_datamodule_and_task(cfg)[1]


def measure(task: torch.nn.Module, args: argparse.Namespace) -> dict[str, float]:
    device = torch.device(args.device)
    task.to(device).train()  # the frozen ViT stays in eval mode; under `full` it trains
    optimizer = torch.optim.AdamW(trainable_param_groups(task, weight_decay=0.05), lr=1e-4)
    image = torch.randn(args.batch, 3, args.size, args.size, device=device)
    mask = torch.randint(0, task.num_classes, (args.batch, args.size, args.size), device=device)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()
    counter = SavedTensorCounter({p.untyped_storage().data_ptr() for p in task.parameters()})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if step == 0:
            counter.start()
        with autocast:
            loss = task._loss(task(image), mask)
        counter.stop()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    trainable = [p for p in task.parameters() if p.requires_grad]
    state_bytes = sum(p.numel() * p.element_size() for p in trainable) * 3  # grad + AdamW exp_avg, exp_avg_sq
    result = {
        "trainable": sum(p.numel() for p in trainable),
        "step_ms": 1000 * sum(times) / len(times),
        "activations_mb": counter.total_bytes / 2**20,
        "grad_optim_mb": state_bytes / 2**20,
    }
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    task.to("cpu")
    return result


def comparisons(results: dict[str, dict[str, Any]]) -> list[str]:
    """The side modes' saved activations and step time against full fine-tuning's, and what checkpointing costs."""
    lines = []
    full = results.get("full")
    for variant in ("vit_adapter_side", "vit_adapter_side_cp"):
        if full is not None and variant in results:
            lines.append(f"{VARIANTS[variant][0]} vs full fine-tuning: {_ratios(results[variant], full)}")
    plain, checkpointed = results.get("vit_adapter_side"), results.get("vit_adapter_side_cp")
    if plain is not None and checkpointed is not None:
        lines.append(f"checkpointing the side mode's neck and head: {_ratios(checkpointed, plain)}")
    return lines


def _ratios(result: dict[str, Any], reference: dict[str, Any]) -> str:
    return ", ".join(f"{label} {result[key] / reference[key]:.2f}x ({result[key]:.0f} / {reference[key]:.0f} {unit})"
                     for label, key, unit in (("saved activations", "activations_mb", "MB"),
                                              ("step time", "step_ms", "ms")))


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    results = {variant: measure(build_task(args, variant), args) for variant in args.variants}
    rows = [(VARIANTS[variant][0], result) for variant, result in results.items()]
    threads = torch.get_num_threads() if args.device == "cpu" else torch.cuda.get_device_name()
    print(f"{args.backbone}, {args.size}x{args.size}, batch {args.batch}, {args.head}, {args.device} "
          f"({threads}), precision {args.precision}, mean of {args.steps} steps after {args.warmup} warm-up; "
          f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    peak = " peak allocated (MB) |" if args.device == "cuda" else ""
    print(f"| variant | trainable params | step time (ms) | saved activations (MB) | grads + AdamW (MB) |{peak}")
    print("|---|---|---|---|---|" + ("---|" if peak else ""))
    for name, r in rows:
        extra = f" {r['peak_mb']:.0f} |" if peak else ""
        print(f"| {name} | {r['trainable'] / 1e6:.2f}M | {r['step_ms']:.0f} | {r['activations_mb']:.0f} | "
              f"{r['grad_optim_mb']:.0f} |{extra}")
    lines = comparisons(results)
    if lines:
        print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
