"""ONNX export of a trained segmentation or depth model: an image batch in, class logits (or depths in metres) at
the image's size out.

The exported graph is `SegmentationForExport`: [0..255 RGB -> normalised] -> zero padding (bottom,
right) to a multiple of `size_divisor` -> encoder (ViT + PEFT method, merged where it merges) -> neck ->
head -> bilinear upsampling to the padded size -> crop to the input size. A depth model's graph
(`vitadapter.export.depth_onnx.DepthForExport`) is the same, its B×1×H×W output clipped to the task's depth
range. Batch, height and width are dynamic (`torch.export.Dim`); torch's dynamo-based exporter (`torch.onnx.export(..., dynamo=True)`)
translates timm's position-embedding resampling, the patch padding and ViT-Adapter's `grid_sample`.

Why the padding: the neck's level sizes (ceil(H/stride) after the ViT's own padding to whole patches)
depend on H and W modulo the patch size and the strides, which torch.export cannot express for every
size at once. On a size that is a multiple of `size_divisor` (lcm of the patch size and the pyramid's
strides: 32 for patch 8 or 16) nothing is padded and the graph computes exactly what eval.py's whole-image
inference computes; on other sizes it computes that on the padded image and crops.

Needs `pip install -e ".[onnx]"` (onnx, onnxscript, onnxruntime; `[dev]` includes them).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

ONNX_INSTALL_HINT = 'pip install -e ".[onnx]" (onnx, onnxscript and onnxruntime; the [dev] extra includes them)'
DETECTION_REFUSAL = (
    "ONNX export covers segmentation and depth checkpoints only. A detection checkpoint's torchvision detector (RPN "
    "proposals, RoI heads, NMS: a data-dependent number of boxes per image) does not go through torch's dynamo-based ONNX "
    "exporter; evaluate or predict it with eval.py / predict.py, or export its ViT with scripts/export_merged.py"
)


def require_onnx() -> None:
    """Raises an ImportError that says how to install the ONNX packages when one of them is missing."""
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: {ONNX_INSTALL_HINT}")


def checked_onnx_path(output: str | Path) -> Path:
    """`output` as a Path, or a ValueError when it is not named *.onnx."""
    if Path(output).suffix.lower() != ".onnx":
        raise ValueError(f"output={str(output)!r}: name the file *.onnx")
    return Path(output)


def size_divisor(encoder: nn.Module) -> int:
    """The padding granularity of the export: lcm of the ViT's patch size and the pyramid's strides."""
    return math.lcm(encoder.backbone.patch_size, *encoder.strides)


def input_normalization(task: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std (0..1 units) the checkpoint's images were normalised with.

    As the run builder resolves them: the data config's `mean`/`std`, else the backbone's own statistics.
    """
    data = (getattr(task, "run_config", None) or {}).get("data") or {}
    backbone = task.encoder.backbone
    if data.get("mean") is None or data.get("std") is None:
        return tuple(backbone.mean), tuple(backbone.std)
    return tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])


class AveragingAdaptivePool2d(nn.Module):
    """`nn.AdaptiveAvgPool2d` as two averaging matrices (bins as PyTorch places them), for any input size.

    PyTorch's adaptive pooling decomposes differently for each input size (a plain pool when the size divides,
    bins otherwise), which torch.export cannot express for a dynamic size. The bins here are PyTorch's:
    [floor(i·h/s), ceil((i+1)·h/s)); the result matches it to float rounding (about 1e-7).

    Args:
        output_size: the pool's output size (an int or an (h, w) pair).
    """

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def _bins(size: int, bins: int, like: Tensor) -> Tensor:
        """bins×size matrix whose row i averages PyTorch's adaptive bin i of a length-`size` axis."""
        index = torch.arange(bins, device=like.device)
        start = (index * size) // bins
        end = ((index + 1) * size + bins - 1) // bins
        position = torch.arange(size, device=like.device)
        inside = ((position[None] >= start[:, None]) & (position[None] < end[:, None])).to(like.dtype)
        return inside / inside.sum(dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        rows = self._bins(x.shape[-2], self.output_size[0], x)
        cols = self._bins(x.shape[-1], self.output_size[1], x)
        return torch.einsum("ih,nchw,jw->ncij", rows, x, cols)


def exportable_pooling(model: nn.Module) -> int:
    """Replaces every `nn.AdaptiveAvgPool2d` in `model` (UPerNet's pyramid pooling) by `AveragingAdaptivePool2d`.

    Returns:
        How many were replaced.
    """
    pools = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    for name, pool in pools:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, AveragingAdaptivePool2d(pool.output_size))
    return len(pools)


class SegmentationForExport(nn.Module):
    """What the ONNX graph computes: `image` B×3×H×W -> `logits` B×K×H×W (any H, W; see the module docs).

    Args:
        task: a trained `SegmentationTask` in eval mode (or any task whose forward gives B×C×h×w maps).
        divisor: pad height and width to a multiple of this (`size_divisor`).
        mean: per-channel mean (0..1 units) of the training normalisation.
        std: per-channel std (0..1 units).
        include_normalization: the input is 0..255 RGB, normalised inside the graph; False: the input is
            already normalised as `(pixel / 255 - mean) / std`.
    """

    output_name = "logits"  # the graph's output

    def __init__(self, task: nn.Module, divisor: int, mean: Sequence[float], std: Sequence[float],
                 include_normalization: bool = False) -> None:
        super().__init__()
        self.task = task
        self.divisor = divisor
        self.include_normalization = include_normalization
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        if self.include_normalization:
            image = (image / 255.0 - self.mean) / self.std
        height, width = image.shape[-2:]
        # at least two cells of `divisor`: a one-cell side has 1-pixel pyramid levels, which export specialises on
        padded_h = torch.sym_max((height + self.divisor - 1) // self.divisor, 2) * self.divisor
        padded_w = torch.sym_max((width + self.divisor - 1) // self.divisor, 2) * self.divisor
        padded = F.pad(image, (0, padded_w - width, 0, padded_h - height))
        logits = F.interpolate(self.task(padded), size=(padded_h, padded_w), mode="bilinear", align_corners=False)
        # index_select rather than slicing: a slice needs padded >= size proven for every symbolic size, which
        # torch.export cannot do; the gather needs nothing
        rows = torch.arange(height, device=image.device)
        cols = torch.arange(width, device=image.device)
        return logits.index_select(2, rows).index_select(3, cols)


@dataclass
class OnnxExport:
    """What `export_segmentation_onnx` wrote (a segmentation or depth model).

    Attributes:
        path: the .onnx file.
        module: the exported PyTorch module (the reference for checks).
        metadata: the strings written to the model's metadata_props.
        opset: the default-domain opset of the graph.
    """

    path: Path
    module: SegmentationForExport
    metadata: dict[str, str] = field(default_factory=dict)
    opset: int = 0


def merge_for_export(task: nn.Module, include_normalization: bool = False) -> dict[str, str]:
    """Merges the task's method where it merges, makes its pooling exportable and describes the graph's input.

    Args:
        task: a trained segmentation or depth task in eval mode (changed in place).
        include_normalization: the graph takes 0..255 RGB (see `SegmentationForExport`).

    Returns:
        The metadata strings every export carries (input, normalisation, sizes, backbone, method).
    """
    encoder = task.encoder
    method = encoder.method
    merged = method is not None and method.mergeable
    if merged:
        encoder.merge()
    exportable_pooling(task)
    mean, std = input_normalization(task)
    divisor = size_divisor(encoder)
    return {
        "input": ("float32 B x 3 x H x W, RGB 0..255 (normalised inside)" if include_normalization
                  else "float32 B x 3 x H x W, RGB normalised as (pixel / 255 - mean) / std"),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
        "include_normalization": json.dumps(include_normalization),
        "patch_size": str(encoder.backbone.patch_size),
        "size_divisor": str(divisor),
        "size_note": (f"any H, W >= 1; padded with zeros (bottom, right) to a multiple of {divisor} inside; "
                      f"at multiples of {divisor} equal to PyTorch whole-image inference"),
        "backbone": encoder.backbone.name,
        "adapter": method.method_name if method is not None else "none",
        "adapter_merged": json.dumps(merged),
    }


def prepare_segmentation(task: nn.Module, include_normalization: bool = False) -> tuple[SegmentationForExport, dict[str, str]]:
    """Merges the task's method where it merges and wraps the task for export.

    Args:
        task: a trained task in eval mode (merged in place).
        include_normalization: see `SegmentationForExport`.

    Returns:
        (the module to export, its metadata strings).
    """
    from vitadapter.tasks import SegmentationTask

    if not isinstance(task, SegmentationTask):
        raise ValueError(f"{type(task).__name__}: {DETECTION_REFUSAL}")
    refusal = getattr(task.head, "onnx_export_refusal", None)
    if refusal:
        raise ValueError(f"model.head {type(task.head).__name__}: {refusal}")
    common = merge_for_export(task, include_normalization)
    mean, std = input_normalization(task)
    module = SegmentationForExport(task, size_divisor(task.encoder), mean, std, include_normalization).eval()
    data = (getattr(task, "run_config", None) or {}).get("data") or {}
    metadata = {
        "vitadapter.task": "segmentation",
        "output": "logits float32 B x K x H x W (argmax over K: class index into class_names)",
        "class_names": json.dumps(list(task.class_names)),
        "num_classes": str(task.num_classes),
        **common,
        "ignore_index": str(task.ignore_index),
    }
    if "reduce_zero_label" in data:
        metadata["reduce_zero_label"] = json.dumps(bool(data["reduce_zero_label"]))
    return module, metadata


def export_segmentation_onnx(module: SegmentationForExport, output: str | Path, metadata: dict[str, str] | None = None,
                             opset: int | None = None) -> OnnxExport:
    """Exports `module` with dynamic batch, height and width and writes it with its metadata.

    Args:
        module: from `prepare_segmentation` (output `logits`) or `prepare_depth` (output `depth`).
        output: the .onnx file to write (weights over 2 GB go to a `<name>.data` file beside it).
        metadata: strings for the model's metadata_props.
        opset: the ONNX opset; None: the exporter's default.

    Returns:
        The written export.
    """
    require_onnx()
    import torch.fx.experimental._config as fx_config

    path = checked_onnx_path(output)
    divisor = module.divisor
    # batch 2 and a non-square size: torch.export specialises dimensions whose example is 1, and equal ones
    example = torch.rand(2, 3, 2 * divisor, 3 * divisor) * (255.0 if module.include_normalization else 1.0)
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=1),
            3: torch.export.Dim("width", min=1)}
    # size-oblivious reasoning for backed sizes: torch's layout checks (`a % b == 0` on strides) otherwise guard
    # on the padded size, whose expression sympy cannot bound
    with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):
        program = torch.export.export(module, (example,), dynamic_shapes={"image": dims}, strict=False)
    onnx_program = torch.onnx.export(program, (example,), input_names=["image"], output_names=[module.output_name],
                                     opset_version=opset, dynamo=True, verbose=False)
    model = onnx_program.model
    for key, value in (metadata or {}).items():
        model.metadata_props[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    weight_bytes = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    onnx_program.save(str(path), external_data=weight_bytes > 1.8e9)
    return OnnxExport(path, module, dict(metadata or {}), int(model.opset_imports.get("", 0)))


def onnx_logits(path: str | Path, image: Tensor, session: Any = None) -> Tensor:
    """Runs an exported model with onnxruntime (CPU) on `image`; its output (logits, or a depth model's depths) as a
    tensor."""
    import onnxruntime as ort

    session = session or ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"image": image.numpy()})[0])


def max_abs_difference(export: OnnxExport, sizes: Sequence[tuple[int, int, int]], seed: int = 0) -> dict[str, float]:
    """max |onnxruntime - PyTorch| of the output (logits or depths) on random images of each (batch, height, width)
    size."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(export.path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    scale = 255.0 if export.module.include_normalization else 1.0
    diffs = {}
    for batch, height, width in sizes:
        image = torch.rand(batch, 3, height, width, generator=generator) * scale
        if not export.module.include_normalization:
            image = (image - export.module.mean) / export.module.std
        with torch.no_grad():
            expected = export.module(image)
        diffs[f"{batch}x3x{height}x{width}"] = float((onnx_logits(export.path, image, session) - expected).abs().max())
    return diffs


def export_onnx(ckpt_path: str | Path, output: str | Path, overrides: Sequence[str] = (),
                include_normalization: bool = False, opset: int | None = None) -> OnnxExport:
    """Loads a train.py segmentation or depth checkpoint, merges its method where it merges and exports it to ONNX.

    Args:
        ckpt_path: a checkpoint written by train.py.
        output: the .onnx file to write.
        overrides: dotted `key=value` changes of the checkpoint's config (e.g. model.backbone.checkpoint=...).
        include_normalization: the graph takes 0..255 RGB and normalises it itself.
        opset: the ONNX opset; None: the exporter's default.

    Returns:
        The written export.
    """
    from vitadapter.export.depth_onnx import prepare_depth
    from vitadapter.export.merged import load_trained_task
    from vitadapter.tasks.depth import DepthTask

    require_onnx()
    checked_onnx_path(output)  # before the model is built
    task = load_trained_task(ckpt_path, overrides)
    prepare = prepare_depth if isinstance(task, DepthTask) else prepare_segmentation
    module, metadata = prepare(task, include_normalization)
    return export_segmentation_onnx(module, output, metadata, opset)
