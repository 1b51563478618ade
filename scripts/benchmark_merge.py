"""Inference time of the frozen ViT encoder alone, with LoRA (unmerged), and with LoRA merged into the weights.

LoRA (Hu et al., ICLR 2022) adds two thin matmuls per wrapped layer while unmerged; merged, the encoder
is the plain frozen ViT again (W + (alpha / r) B A in place of W), so it should cost exactly what the
frozen encoder costs. The three encoders are built in one process from the same random weights
(B set to random values, so merging changes the weights) and timed without gradients, in eval mode,
one forward each in turn, the order rotating every repeat, so that drift (thermal, other load) falls on
all three alike. Reported: median, interquartile range and min/max per forward.

    python scripts/benchmark_merge.py                      # ViT-B/16, 512x512, batch 1, ~1-2 min on 2 CPU cores
    python scripts/benchmark_merge.py --backbone vit_small_patch14_dinov2 --size 448 --repeats 20 --method dora
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitadapter.adapters import build_method  # noqa: E402
from vitadapter.backbone import ViTBackbone  # noqa: E402
from vitadapter.encoder import Encoder  # noqa: E402
from vitadapter.necks import MultiLevelNeck  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vit_base_patch16_224", help="timm ViT name (random init)")
    parser.add_argument("--size", type=int, default=512, help="square input size")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per variant, interleaved")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards per variant")
    parser.add_argument("--method", default="lora", choices=["lora", "dora"])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser.parse_args()


def build_encoders(args: argparse.Namespace) -> dict[str, Encoder]:
    """The plain frozen encoder and two copies with the method: one left unmerged, one merged."""
    neck = functools.partial(MultiLevelNeck, out_channels=256)
    encoders = {}
    for variant in ("frozen ViT", "unmerged", "merged"):
        backbone = ViTBackbone(args.backbone, seed=0)
        method = None if variant == "frozen ViT" else build_method(args.method, r=args.rank)
        torch.manual_seed(0)  # the same method tensors and neck in every copy
        encoders[variant] = Encoder(backbone, neck, method).eval()
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, param in encoders[variant].named_parameters():
                if ".lora_B." in name:
                    param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    encoders["merged"].merge()
    return encoders


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.ERROR)  # the random-weights warning, three times, is noise here
    if args.threads:
        torch.set_num_threads(args.threads)
    encoders = build_encoders(args)
    names = list(encoders)
    image = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(2))
    times: dict[str, list[float]] = {name: [] for name in names}
    outputs = {}
    with torch.inference_mode():
        for name in names:
            for _ in range(args.warmup):
                outputs[name] = encoders[name](image)
        for repeat in range(args.repeats):
            for name in names[repeat % 3:] + names[: repeat % 3]:
                start = time.perf_counter()
                encoders[name](image)
                times[name].append(1000 * (time.perf_counter() - start))

    merge_error = max((outputs["merged"][k] - outputs["unmerged"][k]).abs().max().item() for k in outputs["merged"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.backbone} (random init), {args.size}x{args.size}, batch {args.batch}, fp32, CPU, "
          f"{torch.get_num_threads()} threads, {args.method} r={args.rank} on qkv/proj/fc1/fc2 of every block; "
          f"{args.repeats} interleaved repeats after {args.warmup} warm-up (load average {load:.1f})\n")
    print("| encoder | median (ms) | IQR (ms) | min-max (ms) | vs frozen |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["frozen ViT"])
    labels = {"frozen ViT": "frozen ViT", "unmerged": f"{args.method} unmerged", "merged": f"{args.method} merged"}
    for name in names:
        values = sorted(times[name])
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        median = statistics.median(values)
        print(f"| {labels[name]} | {median:.0f} | {q3 - q1:.0f} | {values[0]:.0f}-{values[-1]:.0f} | "
              f"{median / base:.3f}x |")
    print(f"\nmerged vs unmerged outputs: max |difference| {merge_error:.1e}")


if __name__ == "__main__":
    main()
