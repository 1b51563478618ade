"""ONNX export of a trained depth model: an image batch in, depths in metres at the image's size out.

The graph is the segmentation export's (`SegmentationForExport`: padding to `size_divisor`, encoder, neck, head,
bilinear upsampling, crop; see `vitadapter.export.onnx_export`) with the head's B×1×h×w depths in place of
logits, clipped to the task's depth range as `DepthTask.predict_depth` clips them. It computes whole-image
inference without flip TTA: at sizes that are multiples of `size_divisor` it equals `predict_depth` with
`model.inference.mode=whole` and `flip=false`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from torch import Tensor, nn

from vitadapter.export.onnx_export import SegmentationForExport, input_normalization, merge_for_export, size_divisor


class DepthForExport(SegmentationForExport):
    """What a depth model's ONNX graph computes: `image` B×3×H×W -> `depth` B×1×H×W in metres (any H, W).

    Args:
        task: a trained `DepthTask` in eval mode.
        divisor: pad height and width to a multiple of this (`size_divisor`).
        mean: per-channel mean (0..1 units) of the training normalisation.
        std: per-channel std (0..1 units).
        min_depth: the smallest depth output (metres).
        max_depth: the largest depth output (metres).
        include_normalization: the input is 0..255 RGB, normalised inside the graph.
    """

    output_name = "depth"

    def __init__(self, task: nn.Module, divisor: int, mean: Sequence[float], std: Sequence[float], min_depth: float,
                 max_depth: float, include_normalization: bool = False) -> None:
        super().__init__(task, divisor, mean, std, include_normalization)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)

    def forward(self, image: Tensor) -> Tensor:
        return super().forward(image).clamp(self.min_depth, self.max_depth)


def prepare_depth(task: nn.Module, include_normalization: bool = False) -> tuple[DepthForExport, dict[str, str]]:
    """Merges the depth task's method where it merges and wraps the task for export.

    Args:
        task: a trained `DepthTask` in eval mode (merged in place).
        include_normalization: the graph takes 0..255 RGB and normalises it itself.

    Returns:
        (the module to export, its metadata strings).
    """
    from vitadapter.tasks.depth import DepthTask

    if not isinstance(task, DepthTask):
        raise ValueError(f"prepare_depth exports a DepthTask, not {type(task).__name__}")
    common = merge_for_export(task, include_normalization)
    mean, std = input_normalization(task)
    module = DepthForExport(task, size_divisor(task.encoder), mean, std, task.min_depth, task.max_depth,
                            include_normalization).eval()
    data = (getattr(task, "run_config", None) or {}).get("data") or {}
    metadata = {
        "vitadapter.task": "depth",
        "output": (f"depth float32 B x 1 x H x W in metres, clipped to [{task.min_depth:g}, {task.max_depth:g}] "
                   "(whole-image inference, no flip TTA)"),
        "min_depth": json.dumps(task.min_depth),
        "max_depth": json.dumps(task.max_depth),
        **common,
    }
    if "depth_scale" in data:  # the dataset's 16-bit PNG units per metre, to write predictions as its files
        metadata["depth_scale"] = json.dumps(float(data["depth_scale"]))
    return module, metadata
