"""(slow) A DPT depth model (multi-level neck, fusion blocks) exports to ONNX with 0..255 RGB input: within 1e-4 of
PyTorch at odd sizes and of `predict_depth` at multiples of the size divisor (~10 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.depth_data import tiny_depth_overrides
from vitadapter.export.depth_onnx import prepare_depth
from vitadapter.export.onnx_export import export_segmentation_onnx, onnx_logits
from vitadapter.run.build import build_datamodule_and_task

ATOL = 1e-4


@pytest.mark.slow
def test_dpt_depth_model_exports_with_normalisation_inside(compose_config, tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=nyu_depth_dpt", *tiny_depth_overrides(tmp_path),
                                   "model.head.channels=16"], tmp_path)
    task = build_datamodule_and_task(cfg)[1].eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stands in for training: depths that vary over the range
        for param in task.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    module, metadata = prepare_depth(task, include_normalization=True)
    assert json.loads(metadata["include_normalization"]) is True and metadata["vitadapter.task"] == "depth"
    export = export_segmentation_onnx(module, tmp_path / "dpt.onnx", metadata)
    divisor = module.divisor
    assert divisor == 32

    rgb = torch.rand(2, 3, 2 * divisor, 3 * divisor, generator=generator) * 255.0
    normalised = (rgb / 255.0 - module.mean) / module.std
    with torch.no_grad():
        expected = task.predict_depth(normalised, (2 * divisor, 3 * divisor))
    assert float(expected.std()) > 0.01
    torch.testing.assert_close(onnx_logits(export.path, rgb)[:, 0], expected, rtol=0, atol=ATOL)
    for batch, height, width in ((1, 45, 61), (2, 37, 83)):
        rgb = torch.rand(batch, 3, height, width, generator=generator) * 255.0
        exported = onnx_logits(export.path, rgb)
        assert exported.shape == (batch, 1, height, width)
        with torch.no_grad():
            torch.testing.assert_close(exported, module(rgb), rtol=0, atol=ATOL)
