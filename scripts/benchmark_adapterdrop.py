"""AdapterDrop (Rücklé et al., EMNLP 2021): what removing the adapters of the lower blocks saves.

Builds the same frozen ViT encoder (random init) three times in one process: without adapters, with
adapters in every block, and with `drop_below = depth / 2`. It times eval-mode inference and a
training step (forward + backward through the encoder, a stand-in loss on the pyramid),
interleaving the variants on every repetition so that machine drift hits all of them alike, and
reports medians. The adapter's inference overhead is its time minus the plain encoder's.

    python scripts/benchmark_adapterdrop.py --method lora                # ViT-B/16, 512 px, LoRA r 8 unmerged
    python scripts/benchmark_adapterdrop.py --method bottleneck --size 384
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from vitadapter.adapters import build_method
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vit_base_patch16_224", help="timm ViT name (random init)")
    parser.add_argument("--size", type=int, default=512, help="square input size")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--method", default="bottleneck", help="a per-block method (bottleneck, convpass, lora, ...)")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds per variant (after one warm-up round)")
    parser.add_argument("--inferences", type=int, default=3, help="timed inferences per variant and round")
    return parser.parse_args()


def build(args: argparse.Namespace, drop_below: int | None) -> Encoder:
    backbone = ViTBackbone(args.backbone, pretrained=False)
    method = None if drop_below is None else build_method(args.method, drop_below=drop_below)
    encoder = Encoder(backbone, partial(MultiLevelNeck, out_channels=256), method)
    with torch.no_grad():  # trained-looking adapters: zero-initialised ones could take shortcuts
        for param in encoder.method_parameters():
            param.normal_(0, 0.02)
    return encoder


def infer(encoder: Encoder, image: torch.Tensor) -> None:
    encoder.eval()
    with torch.no_grad():
        encoder(image)


def train_step(encoder: Encoder, image: torch.Tensor) -> None:
    encoder.train()
    loss = sum(level.float().square().mean() for level in encoder(image).values())
    loss.backward()
    encoder.zero_grad(set_to_none=True)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    depth = ViTBackbone(args.backbone, pretrained=False).depth
    variants = {"frozen ViT, no adapters": None, f"{args.method}, every block": 0,
                f"{args.method}, drop_below={depth // 2}": depth // 2}
    encoders = {name: build(args, k) for name, k in variants.items()}
    image = torch.randn(args.batch, 3, args.size, args.size)
    infer_ms: dict[str, list[float]] = {name: [] for name in encoders}
    train_ms: dict[str, list[float]] = {name: [] for name in encoders}
    for repeat in range(args.repeats + 1):
        for name, encoder in encoders.items():
            inference = [timed(partial(infer, encoder, image)) for _ in range(args.inferences)]
            training = timed(partial(train_step, encoder, image))
            if repeat:  # the first round warms up
                infer_ms[name].extend(inference)
                train_ms[name].append(training)
    base = statistics.median(infer_ms["frozen ViT, no adapters"])
    print(f"{args.backbone} (depth {depth}), {args.size}x{args.size}, batch {args.batch}, CPU "
          f"{torch.get_num_threads()} threads, medians of {args.repeats * args.inferences} inferences and "
          f"{args.repeats} training steps per variant, interleaved\n")
    print("| variant | trainable params | inference (ms) | adapter overhead (ms) | train step (ms) |")
    print("|---|---|---|---|---|")
    for name, encoder in encoders.items():
        trainable = sum(p.numel() for p in encoder.method_parameters())
        inference = statistics.median(infer_ms[name])
        overhead = "—" if variants[name] is None else f"{inference - base:+.0f}"
        print(f"| {name} | {trainable / 1e6:.2f}M | {inference:.0f} | {overhead} | "
              f"{statistics.median(train_ms[name]):.0f} |")


if __name__ == "__main__":
    main()
