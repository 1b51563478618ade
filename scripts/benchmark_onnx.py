"""CPU inference time of a checkpoint's exported ONNX model (onnxruntime) against the same module in PyTorch.

Exports the checkpoint (as scripts/export_onnx.py does) into a temporary folder, then times one forward of
the PyTorch module (`SegmentationForExport`, eval mode, inference mode, fp32) and one onnxruntime run in
turn, the order alternating every repeat, after a warm-up of each; both with the same number of threads.
Reports medians, interquartile ranges and the max |logits difference|.

    python scripts/benchmark_onnx.py ckpt_path=outputs/train/runs/<date>/checkpoints/last.ckpt size=512 repeats=10
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPTIONS = {"size": "512", "batch": "1", "repeats": "10", "threads": "2"}


def main(argv: list[str] | None = None) -> None:
    """Exports, times both runtimes and prints a Markdown table."""
    from vitadapter.export.arguments import parse_key_values

    values, overrides = parse_key_values(sys.argv[1:] if argv is None else argv, __doc__, ("ckpt_path",), OPTIONS)
    size, batch, repeats, threads = (int(values[k]) for k in ("size", "batch", "repeats", "threads"))
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(threads)
    import onnxruntime as ort

    from vitadapter.export.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        export = export_onnx(values["ckpt_path"], Path(folder) / "model.onnx", overrides)
        export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(export.path), options, providers=["CPUExecutionProvider"])
        image = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        feed = {"image": image.numpy()}
        runs = {"PyTorch (eager)": lambda: export.module(image), "onnxruntime": lambda: session.run(["logits"], feed)}
        times: dict[str, list[float]] = {name: [] for name in runs}
        with torch.inference_mode():
            outputs = {name: run() for name, run in runs.items()}  # warm-up
            for repeat in range(repeats):
                for name in list(runs)[:: 1 if repeat % 2 == 0 else -1]:
                    start = time.perf_counter()
                    runs[name]()
                    times[name].append(1000 * (time.perf_counter() - start))
        diff = float((torch.from_numpy(outputs["onnxruntime"][0]) - outputs["PyTorch (eager)"]).abs().max())
        print(f"{export.metadata['backbone']} + {export.metadata['adapter']} ({Path(values['ckpt_path']).name}), "
              f"{batch}x3x{size}x{size}, fp32, CPU, {threads} threads, {repeats} alternating repeats after a warm-up; "
              f"export {export_s:.0f} s, opset {export.opset}, {export.path.stat().st_size / 2**20:.1f} MiB\n")
        print("| runtime | median (ms) | IQR (ms) | vs PyTorch |")
        print("|---|---|---|---|")
        base = statistics.median(times["PyTorch (eager)"])
        for name, values_ms in times.items():
            q1, _, q3 = statistics.quantiles(values_ms, n=4) if len(values_ms) > 1 else (values_ms[0],) * 3
            median = statistics.median(values_ms)
            print(f"| {name} | {median:.1f} | {q3 - q1:.1f} | {median / base:.2f}x |")
        print(f"\nmax |onnxruntime - PyTorch| logits: {diff:.1e}")


if __name__ == "__main__":
    main()
