"""Shared fixtures: a tiny synthetic dataset folder and composed configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers import TORCH_THREADS, compose_at, run_cli, tiny_det_overrides, tiny_seg_overrides, train_in_process

torch.set_num_threads(TORCH_THREADS)


@pytest.fixture(scope="session")
def seg_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for a tiny synthetic ADE20K-layout set (written by the datamodule on first use)."""
    return tmp_path_factory.mktemp("tiny_ade20k")


@pytest.fixture(scope="session")
def det_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for a tiny synthetic COCO-layout set (written by the datamodule on first use)."""
    return tmp_path_factory.mktemp("tiny_coco")


@pytest.fixture(scope="session")
def panoptic_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for a tiny synthetic COCO-panoptic-layout set (written by the datamodule on first use)."""
    return tmp_path_factory.mktemp("tiny_coco_panoptic")


@pytest.fixture(scope="session")
def det_demo_run(tmp_path_factory: pytest.TempPathFactory, det_data_root: Path) -> Path:
    """A 2-step demo_det training run through train.py (shared by the CLI and predict tests); its run directory."""
    run_dir = tmp_path_factory.mktemp("det_demo_run")
    run_cli("train.py", "experiment=demo_det", *tiny_det_overrides(det_data_root, "mask_rcnn_light"),
            f"hydra.run.dir={run_dir}")
    return run_dir


@pytest.fixture(scope="session")
def seg_demo_run(tmp_path_factory: pytest.TempPathFactory, seg_data_root: Path) -> Path:
    """A 2-step demo_seg training run through train.py in bf16 autocast, as the demo runs (shared by the CLI,
    multi-task and fusion tests); its run directory. It shares its frozen ViT with `det_demo_run`."""
    run_dir = tmp_path_factory.mktemp("seg_demo_run")
    run_cli("train.py", "experiment=demo_seg", *tiny_seg_overrides(seg_data_root), "trainer.precision=bf16-mixed",
            f"hydra.run.dir={run_dir}")
    return run_dir


@pytest.fixture(scope="session")
def lora_checkpoint(tmp_path_factory: pytest.TempPathFactory, seg_data_root: Path) -> Path:
    """A 2-step LoRA demo_seg run (in process) whose B matrices are then set to random values, so merging matters
    (shared by the merged-timm, the ONNX export, warm-start and multi-task tests)."""
    run_dir = tmp_path_factory.mktemp("lora_run")
    train_in_process(run_dir, "experiment=demo_seg", *tiny_seg_overrides(seg_data_root), "model/adapter=lora")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(0)
    b_keys = [k for k in checkpoint["state_dict"] if ".lora_B." in k]
    assert b_keys and all(k.startswith("encoder.backbone.vit.blocks.") for k in b_keys)
    for key in b_keys:
        checkpoint["state_dict"][key] = 0.1 * torch.randn(checkpoint["state_dict"][key].shape, generator=generator)
    path = run_dir / "random_b.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def compose_config() -> Callable[..., DictConfig]:
    """compose_config(config_name, overrides, output_dir) -> the composed config (hydra keys resolved)."""

    return compose_at
