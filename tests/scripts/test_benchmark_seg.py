"""scripts/benchmark_seg.py: the checkpointed side-mode variant builds what it names, and the ratios it prints."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("benchmark_seg", ROOT / "scripts" / "benchmark_seg.py")
benchmark_seg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark_seg)


def test_the_checkpointed_side_mode_checkpoints_neck_and_head() -> None:
    args = argparse.Namespace(backbone="test_vit", size=64, head="upernet", bottleneck_dim=8)
    task = benchmark_seg.build_task(args, "vit_adapter_side_cp")
    assert task.encoder.neck.injectors is None
    assert task.encoder.neck.grad_checkpointing and task.head.grad_checkpointing


def test_ratios_against_full_fine_tuning_and_the_unchecked_side_mode() -> None:
    results = {"full": {"activations_mb": 2000.0, "step_ms": 1000.0},
               "vit_adapter_side": {"activations_mb": 3000.0, "step_ms": 800.0},
               "vit_adapter_side_cp": {"activations_mb": 900.0, "step_ms": 1000.0}}
    assert benchmark_seg.comparisons(results) == [
        "frozen ViT + ViT-Adapter (inject=false) vs full fine-tuning: saved activations 1.50x (3000 / 2000 MB), "
        "step time 0.80x (800 / 1000 ms)",
        "frozen ViT + ViT-Adapter (inject=false, checkpointing) vs full fine-tuning: saved activations 0.45x "
        "(900 / 2000 MB), step time 1.00x (1000 / 1000 ms)",
        "checkpointing the side mode's neck and head: saved activations 0.30x (900 / 3000 MB), step time 1.25x "
        "(1000 / 800 ms)",
    ]
    assert benchmark_seg.comparisons({"full": results["full"]}) == []
