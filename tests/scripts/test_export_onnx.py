"""scripts/export_onnx.py: a trained segmentation checkpoint -> ONNX with dynamic batch and size, run by onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from tests.helpers import run_script, tiny_det_overrides, tiny_seg_overrides, train_in_process
from vitadapter.export import load_trained_task
from vitadapter.export.onnx_export import (
    AveragingAdaptivePool2d,
    SegmentationForExport,
    export_onnx,
    export_segmentation_onnx,
    exportable_pooling,
    input_normalization,
    onnx_logits,
    prepare_segmentation,
    size_divisor,
)
from vitadapter.inference.sliding_window import whole_inference
from vitadapter.run.build import build_datamodule_and_task

ATOL = 1e-4


def _images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_cli_export_of_a_merged_lora_checkpoint_matches_pytorch(lora_checkpoint: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """The exported graph (LoRA merged) gives the trained, unmerged model's logits at several sizes and batches."""
    output = tmp_path / "model.onnx"
    run_script("scripts/export_onnx.py", f"ckpt_path={lora_checkpoint}", f"output={output}")  # the script's main()
    assert output.is_file() and "onnxruntime vs PyTorch at 2x3x384x640" in capsys.readouterr().out

    model = onnx.load(str(output))
    meta = {p.key: p.value for p in model.metadata_props}
    task = load_trained_task(lora_checkpoint)  # unmerged: LoRA as trained
    mean, std = input_normalization(task)
    assert json.loads(meta["class_names"]) == task.class_names and int(meta["num_classes"]) == task.num_classes
    assert json.loads(meta["mean"]) == list(mean) and json.loads(meta["std"]) == list(std)
    assert meta["adapter"] == "lora" and json.loads(meta["adapter_merged"]) is True
    assert int(meta["size_divisor"]) == size_divisor(task.encoder) == 32 and int(meta["patch_size"]) == 8
    assert not any("lora" in init.name for init in model.graph.initializer)  # merged: no LoRA tensors left
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3] and dims[1] == ""  # batch, height, width symbolic; 3 channels fixed

    # sizes that are multiples of 32: exactly eval.py's whole-image inference of the trained model
    for batch, height, width in ((1, 64, 64), (2, 96, 160)):
        image = _images(batch, height, width)
        with torch.no_grad():
            expected = whole_inference(task, image)
        torch.testing.assert_close(onnx_logits(output, image), expected, rtol=0, atol=ATOL)
    # any other size: the exported module's padding, still the trained (unmerged) model
    reference = SegmentationForExport(task, 32, mean, std).eval()
    for batch, height, width in ((2, 100, 70), (1, 37, 131)):
        image = _images(batch, height, width, seed=1)
        logits = onnx_logits(output, image)
        assert logits.shape == (batch, task.num_classes, height, width)
        with torch.no_grad():
            torch.testing.assert_close(logits, reference(image), rtol=0, atol=ATOL)


def test_a_bfloat16_trained_checkpoint_exports_as_float32(tmp_path: Path, seg_data_root: Path) -> None:
    """A trunk trained with frozen weights in bfloat16 is rebuilt in float32 for export: the graph holds float32
    weights only and gives the float32 build's logits."""
    train_in_process(tmp_path / "run", "experiment=demo_seg", *tiny_seg_overrides(seg_data_root),
                     "model.backbone.frozen_dtype=bfloat16")
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    output = tmp_path / "model.onnx"
    export_onnx(checkpoint, output)
    initializers = onnx.load(str(output)).graph.initializer
    kinds = {init.data_type for init in initializers if init.dims}
    assert onnx.TensorProto.FLOAT in kinds and not kinds & {onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT16}
    task = load_trained_task(checkpoint)
    assert task.backbone.vit.blocks[0].attn.qkv.weight.dtype == torch.float32
    image = _images(1, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(onnx_logits(output, image), whole_inference(task, image), rtol=0, atol=ATOL)


@pytest.mark.slow
def test_unmergeable_method_upernet_and_normalisation_inside(compose_config, tmp_path: Path, seg_data_root: Path) -> None:
    """Bottleneck adapters (no merge) export as they run; UPerNet's pyramid pooling exports for any size; with
    include_normalization the graph takes 0..255 RGB (30-90 s)."""
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root), "model/adapter=bottleneck",
                                   "model/head=upernet"], tmp_path)
    task = build_datamodule_and_task(cfg)[1].eval()
    with torch.no_grad():  # non-zero up-projections, so the adapters change the output
        for name, param in task.named_parameters():
            if ".up." in name:
                param.add_(0.05 * torch.randn(param.shape, generator=torch.Generator().manual_seed(3)))
    image = _images(2, 64, 96)
    with torch.no_grad():
        before = whole_inference(task, image)  # PyTorch's own adaptive pooling
    module, metadata = prepare_segmentation(task, include_normalization=True)
    assert json.loads(metadata["adapter_merged"]) is False
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in task.modules())
    export = export_segmentation_onnx(module, tmp_path / "bottleneck.onnx", metadata)

    mean, std = module.mean, module.std
    rgb = (image * std + mean) * 255.0  # the same images as 0..255 RGB
    torch.testing.assert_close(onnx_logits(export.path, rgb), before, rtol=0, atol=ATOL)
    rgb = torch.rand(1, 3, 75, 50, generator=torch.Generator().manual_seed(4)) * 255.0
    with torch.no_grad():
        torch.testing.assert_close(onnx_logits(export.path, rgb), module(rgb), rtol=0, atol=ATOL)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (5, 7), (6, 6), (13, 4), (40, 23)])
def test_averaging_pool_matches_adaptive_avg_pool(size: tuple[int, int]) -> None:
    x = _images(2, *size)
    for scale in (1, 2, 3, 6):
        torch.testing.assert_close(AveragingAdaptivePool2d(scale)(x), nn.AdaptiveAvgPool2d(scale)(x), rtol=0, atol=1e-6)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.Sequential(nn.AdaptiveAvgPool2d((1, 2))))
    assert exportable_pooling(model) == 2 and not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())


def test_detection_checkpoints_and_bad_names_are_refused(compose_config, tmp_path: Path, det_data_root: Path) -> None:
    cfg = compose_config("train", ["experiment=demo_det", *tiny_det_overrides(det_data_root, "mask_rcnn_light")], tmp_path)
    task = build_datamodule_and_task(cfg)[1].eval()
    with pytest.raises(ValueError, match="ONNX export covers segmentation and depth checkpoints only.*RoI heads, NMS"):
        prepare_segmentation(task)
    with pytest.raises(ValueError, match=r"output='model.pt': name the file \*\.onnx"):
        export_onnx(tmp_path / "missing.ckpt", "model.pt")


@pytest.mark.slow
def test_vit_adapter_neck_exports(compose_config, tmp_path: Path, seg_data_root: Path) -> None:
    """ViT-Adapter (deformable attention through grid_sample, spatial prior) exports with dynamic sizes (~2-3 min)."""
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root, "vit_adapter")], tmp_path)
    task = build_datamodule_and_task(cfg)[1].eval()
    with torch.no_grad():  # the injectors' gamma starts at 0: make the interaction matter
        for name, param in task.named_parameters():
            if name.endswith("gamma"):
                param.fill_(0.5)
    module, metadata = prepare_segmentation(task)
    export = export_segmentation_onnx(module, tmp_path / "vit_adapter.onnx", metadata)
    for batch, height, width, seed in ((1, 64, 64, 0), (2, 96, 160, 1), (1, 70, 100, 2)):
        image = _images(batch, height, width, seed)
        with torch.no_grad():
            expected = module(image)
        torch.testing.assert_close(onnx_logits(export.path, image), expected, rtol=0, atol=ATOL)
