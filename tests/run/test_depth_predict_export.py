"""A trained depth checkpoint through predict.py (alone, and beside a segmentation checkpoint on one frozen ViT) and
through scripts/export_onnx.py (output `depth` in metres, onnxruntime within 1e-4 of PyTorch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from tests.depth_data import tiny_depth_overrides, write_nyu_fixture
from tests.helpers import predict_in_process, run_script, tiny_seg_overrides, train_in_process
from vitadapter.export.depth_onnx import DepthForExport
from vitadapter.export.onnx_export import input_normalization, onnx_logits, size_divisor
from vitadapter.inference.visualize import (
    COLORBAR_GAP,
    COLORBAR_WIDTH,
    PANEL_GAP,
    colorize_depth,
    depth_colors,
    draw_depth,
)
from vitadapter.run.predict import read_rgb, task_drawer
from vitadapter.run.trained import load_trained

ATOL = 1e-4
DEMO_VIT = "{patch_size:8,depth:4,img_size:128}"  # demo_seg's test_vit, so that the two checkpoints share it


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nyu_fixture(tmp_path_factory.mktemp("nyu"))


@pytest.fixture(scope="module")
def depth_checkpoint(tmp_path_factory: pytest.TempPathFactory, nyu_root: Path) -> Path:
    """A 2-step nyu_depth_linear run (tokens neck, linear depth head; evaluation rescaled into 80×56) on demo_seg's
    ViT, whose head is then perturbed, so that its depths vary over the image."""
    run_dir = tmp_path_factory.mktemp("depth_run")
    train_in_process(run_dir, "experiment=nyu_depth_linear", *tiny_depth_overrides(nyu_root, "tokens"),
                     f"++model.backbone.model_kwargs={DEMO_VIT}", "data.test_scale=[80,56]", "data.eval_crop=null")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(0)
    head_keys = [k for k, v in checkpoint["state_dict"].items() if k.startswith("head.") and v.is_floating_point()]
    assert head_keys
    for key in head_keys:
        value = checkpoint["state_dict"][key]
        checkpoint["state_dict"][key] = value + 3.0 * torch.randn(value.shape, generator=generator)
    path = run_dir / "perturbed.ckpt"
    torch.save(checkpoint, path)
    return path


def test_predict_draws_the_depth_validation_computes(depth_checkpoint: Path, nyu_root: Path, tmp_path: Path) -> None:
    folder = nyu_root / "images" / "test"
    predict_in_process(depth_checkpoint, tmp_path / "run", f"input={folder}", f"output={tmp_path / 'drawn'}")
    datamodule, task = load_trained(depth_checkpoint)
    datamodule.setup("validate")
    first, last = tuple(depth_colors()[0]), tuple(depth_colors()[-1])
    for index in range(len(datamodule.val_set)):
        sample = datamodule.val_set[index]  # the validation path: the dataset's reader and transform
        rgb = read_rgb(folder / f"{sample['name']}.jpg")
        with torch.no_grad():
            depth = task.predict_depth(sample["image"][None], tuple(sample["depth"].shape))[0].numpy()
        drawn = np.asarray(Image.open(tmp_path / "drawn" / f"{sample['name']}.png"))
        assert np.array_equal(drawn, np.asarray(draw_depth(rgb, depth, task.min_depth, task.max_depth)))
        height, width = rgb.shape[:2]
        assert drawn.shape[0] == height and np.array_equal(drawn[:, :width], rgb)
        panel = drawn[:, width + PANEL_GAP:2 * width + PANEL_GAP]
        assert np.array_equal(panel, colorize_depth(depth, task.min_depth, task.max_depth))
        assert len({tuple(c) for c in panel.reshape(-1, 3)}) > 3  # the depths vary
        bar = drawn[:, 2 * width + PANEL_GAP + COLORBAR_GAP + COLORBAR_WIDTH // 2]
        coloured = [tuple(c) for c in bar if tuple(c) != (255, 255, 255)]
        assert coloured[0] == last and coloured[-1] == first  # far at the top, near at the bottom


def test_predict_draws_segmentation_and_depth_from_one_vit(depth_checkpoint: Path, nyu_root: Path, seg_data_root: Path,
                                                          tmp_path: Path) -> None:
    train_in_process(tmp_path / "seg", "experiment=demo_seg", *tiny_seg_overrides(seg_data_root))
    seg_checkpoint = tmp_path / "seg" / "checkpoints" / "last.ckpt"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image = sorted((nyu_root / "images" / "test").glob("*.jpg"))[1]
    shutil.copy(image, inputs)
    predict_in_process(f"[{seg_checkpoint},{depth_checkpoint}]", tmp_path / "run", f"input={inputs}",
                       f"output={tmp_path / 'drawn'}")
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["demo_seg", "nyu_depth_linear"]
    for name, checkpoint in (("demo_seg", seg_checkpoint), ("nyu_depth_linear", depth_checkpoint)):
        datamodule, alone = load_trained(checkpoint)
        with torch.inference_mode():
            expected = np.asarray(task_drawer(alone, datamodule, torch.device("cpu"), 0.5, 0.5)(read_rgb(image)))
        drawn = tmp_path / "drawn" / name / f"{image.stem}.png"
        assert np.array_equal(np.asarray(Image.open(drawn).convert("RGB")), expected), name


def test_depth_checkpoint_exports_to_onnx_within_1e4(depth_checkpoint: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "depth.onnx"
    run_script("scripts/export_onnx.py", f"ckpt_path={depth_checkpoint}", f"output={output}", "check=false")
    assert "input 'image', output 'depth'" in capsys.readouterr().out
    model = onnx.load(str(output))
    meta = {p.key: p.value for p in model.metadata_props}
    _, task = load_trained(depth_checkpoint)
    assert meta["vitadapter.task"] == "depth" and [o.name for o in model.graph.output] == ["depth"]
    assert json.loads(meta["min_depth"]) == task.min_depth and json.loads(meta["max_depth"]) == task.max_depth
    assert json.loads(meta["depth_scale"]) == 1000.0 and meta["adapter"] == "none"
    divisor = size_divisor(task.encoder)
    assert int(meta["size_divisor"]) == divisor == 8  # the tokens neck's one level: the patch stride

    # a multiple of the divisor: exactly the task's own whole-image prediction, B×1×H×W metres
    image = torch.randn(2, 3, 4 * divisor, 6 * divisor, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = task.predict_depth(image, (4 * divisor, 6 * divisor))
    exported = onnx_logits(output, image)
    assert exported.shape == (2, 1, 4 * divisor, 6 * divisor)
    torch.testing.assert_close(exported[:, 0], expected, rtol=0, atol=ATOL)
    assert float(expected.std()) > 0.01
    # odd sizes: the exported module's padding, still the trained model
    reference = DepthForExport(task, divisor, *input_normalization(task), task.min_depth, task.max_depth).eval()
    differences = []
    for batch, height, width in ((1, 45, 61), (2, 37, 83)):
        image = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
        exported = onnx_logits(output, image)
        assert exported.shape == (batch, 1, height, width)
        with torch.no_grad():
            differences.append(float((exported - reference(image)).abs().max()))
        assert float(exported.min()) >= task.min_depth and float(exported.max()) <= task.max_depth
    assert max(differences) <= ATOL, differences
