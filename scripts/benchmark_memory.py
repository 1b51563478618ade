"""The memory estimate (`scripts/estimate_memory.py`) against the measured peak of the same train.py run.

For each configuration, the predicted peak resident set of `python train.py OVERRIDES` (a dry run on fake tensors)
and the measured one: the maximum resident set size of a real 2-step train.py run (training, validation at step 2,
the final validation, the inference timing) in a child process, from `os.wait4` in a small launcher. Every run
is `experiment=ade20k_seg_dinov3` on the CPU at crop 224, batch 1, random weights, on a synthetic ADE20K-layout
folder (4 training and 2 validation images of 64 pixels, validated at 224), one after the other.

    python scripts/benchmark_memory.py                          # every configuration (the 7B needs ~20 GB)
    python scripts/benchmark_memory.py --configs vit_s vit_l_bf16 --out outputs/memory.md
    python scripts/benchmark_memory.py --baseline               # measure the CPU process baseline
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitadapter.cost.memory_estimate import GB, MemoryEstimate, estimate_training_memory  # noqa: E402
from vitadapter.run.compose import train_config  # noqa: E402

# batch 1 needs a head without BatchNorm on its 1x1 pooled map (UPerNet's PPM); validation at the crop's size
COMMON = [
    "experiment=ade20k_seg_dinov3",
    "model.backbone.pretrained=false",
    "data.crop_size=224",
    "data.batch_size=1",
    "data.num_workers=0",
    "data.test_scale=[2048,224]",
    "trainer=cpu",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "model.inference.mode=whole",
    "model.head.norm=gn",
    "callbacks.rich_progress_bar=null",
]
SYNTHETIC = "data.synthetic={num_train:4,num_val:2,image_size:64,seed:0}"
# the 7B's neck and heads, narrowed so that its training fits in 20 GB (docs/backbones.md)
GIANT_WIDTHS = ["model.head.channels=256", "model.aux_head.channels=128", "model.neck.extra_extractors=0"]
CONFIGS = {
    "vit_s": ["model.backbone.name=vit_small_patch16_dinov3", "model.backbone.frozen_dtype=float32"],
    "vit_b": ["model.backbone.name=vit_base_patch16_dinov3", "model.backbone.frozen_dtype=float32"],
    "vit_l_fp32": ["model.backbone.name=vit_large_patch16_dinov3", "model.backbone.frozen_dtype=float32"],
    "vit_l_bf16": ["model.backbone.name=vit_large_patch16_dinov3", "model.backbone.frozen_dtype=bfloat16"],
    "vit_hplus_bf16": ["model.backbone.name=vit_huge_plus_patch16_dinov3", "model.backbone.frozen_dtype=bfloat16"],
    "vit_7b_bf16": ["model.backbone.name=vit_7b_patch16_dinov3", "model.backbone.frozen_dtype=bfloat16",
                    *GIANT_WIDTHS],
}
TINY = ["experiment=demo_seg", "model/backbone=test_vit", "model.backbone.name=test_vit",
        "model.backbone.model_kwargs={}",
        "model.head.channels=16", "data.crop_size=64", "data.train_scale=[256,64]", "data.test_scale=[256,64]",
        "data.batch_size=2", "data.num_workers=0", "trainer=cpu", "trainer.precision=32-true", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "model.inference.stride=43", "callbacks.rich_progress_bar=null"]
IMPORTS = "import lightning, timm, hydra, torch; import vitadapter.run.train, vitadapter.cli"


# A small process starts the measured one and reads its peak from `wait4`: a child's peak resident set includes the
# process it was forked from (Linux keeps that image's high-water mark across exec), and this script's is ~1 GB.
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def peak_rss(argv: list[str], log: Path) -> tuple[int, int, float]:
    """Runs `argv` (output to `log`) and returns (its exit status, its peak resident set in bytes, seconds)."""
    start = time.perf_counter()
    result = log.with_suffix(".rusage")
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(result), *argv], cwd=ROOT, stdout=out,
                       stderr=subprocess.STDOUT, check=True)
    status, max_rss = (int(v) for v in result.read_text().split())
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return status, max_rss * scale, time.perf_counter() - start


def measured_run(overrides: list[str], work: Path) -> dict[str, float]:
    """Peak RSS (bytes), wall time and median step time of `python train.py OVERRIDES` in a fresh process."""
    run_dir = work / "run"
    work.mkdir(parents=True, exist_ok=True)
    status, peak, seconds = peak_rss([sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"],
                                     work / "train.log")
    if status != 0:
        raise RuntimeError(f"train.py {' '.join(overrides)} failed ({status}); see {work / 'train.log'}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"peak": peak, "seconds": seconds, "step_ms": metrics.get("perf/train_step_ms") or float("nan")}


def row(name: str, estimate: MemoryEstimate, measured: dict[str, float]) -> str:
    """One markdown table row: the parts, the estimate, the measured peak and the error."""
    error = 100 * (estimate.total - measured["peak"]) / measured["peak"]
    parts = " | ".join(f"{getattr(estimate, part) / GB:.2f}" for part in MemoryEstimate.PARTS)
    return (f"| {name} | {parts} | {estimate.total / GB:.2f} | {measured['peak'] / GB:.2f} | {error:+.1f}% "
            f"| {measured['step_ms'] / 1000:.1f} s |")


HEADER = ("| configuration | " + " | ".join(part.replace("_", " ") for part in MemoryEstimate.PARTS)
          + " | estimate | measured peak RSS | error | step |\n" + "|---" * (len(MemoryEstimate.PARTS) + 5) + "|")


def baseline(work: Path) -> None:
    """Prints the resident set of the imports alone and the baseline: a tiny 2-step run's peak minus its tensors."""
    status, imports, _ = peak_rss([sys.executable, "-c", IMPORTS], work / "imports.log")
    overrides = [*TINY, f"data.root={work / 'data'}", "data.synthetic={num_train:6,num_val:3,image_size:64,seed:0}"]
    measured = measured_run(overrides, work)
    tensors = estimate_training_memory(train_config(overrides, work / "run"), baseline_bytes=0).total
    print(f"imports alone: {imports / GB:.3f} GB; tiny 2-step run: {measured['peak'] / GB:.3f} GB peak RSS, "
          f"{tensors / GB:.3f} GB of it its tensors; baseline: {(measured['peak'] - tensors) / GB:.3f} GB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark_memory.md",
                        help="where the markdown table is written")
    parser.add_argument("--baseline", action="store_true", help="measure the CPU process baseline instead")
    args = parser.parse_args(argv)
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with tempfile.TemporaryDirectory(prefix="benchmark_memory_") as tmp:
        work = Path(tmp)
        if args.baseline:
            baseline(work)
            return
        load_before = os.getloadavg()[0]
        lines = [HEADER]
        for name in args.configs:
            overrides = [*COMMON, *CONFIGS[name], f"data.root={work / 'data'}", SYNTHETIC]
            estimate = estimate_training_memory(train_config(overrides, work / name / "run"))
            lines.append(row(name, estimate, measured_run(overrides, work / name)))
            print(lines[-1], flush=True)
    lines.append(f"\nGB = 10^9 bytes; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
                 f"{os.cpu_count()} CPUs, torch threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
