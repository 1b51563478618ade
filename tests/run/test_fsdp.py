"""trainer=fsdp: the frozen trunk sharded across processes with FSDP2 (on CPU: 2 gloo processes, `trainer=fsdp_sim`).

A sharded run's checkpoint holds exactly what a single-device run's holds (no frozen weight), and evaluating it on
one process reproduces the sharded run's own final validation, which ran in lock-step across the ranks (the 3
validation images split 2 + 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import compose_at, evaluate_in_process, run_cli, tiny_seg_overrides
from vitadapter.run.build import build_datamodule_and_task


@pytest.mark.parametrize(("trainer", "accelerator", "devices"), [("fsdp", "gpu", -1), ("fsdp_sim", "cpu", 2)])
def test_the_fsdp_trainers_compose(tmp_path: Path, trainer: str, accelerator: str, devices: int) -> None:
    cfg = compose_at("train", ["experiment=ade20k_seg_dinov3", f"trainer={trainer}"], tmp_path)
    assert cfg.trainer.strategy._target_ == "vitadapter.run.fsdp.FrozenTrunkFSDP"
    assert (cfg.trainer.accelerator, cfg.trainer.devices) == (accelerator, devices)


def _sharded_run_equals_one_process(tmp_path: Path, data_root: Path, *trainer: str) -> None:
    overrides = ["experiment=demo_seg", *tiny_seg_overrides(data_root), *trainer]
    run_cli("train.py", *overrides, f"hydra.run.dir={tmp_path / 'train'}", timeout=400)
    checkpoint = torch.load(tmp_path / "train" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    task = build_datamodule_and_task(compose_at("train", overrides, tmp_path / "build"))[1]
    frozen = set(task.frozen_state_keys())
    expected = {key: tuple(value.shape) for key, value in task.state_dict().items() if key not in frozen}
    assert {key: tuple(value.shape) for key, value in checkpoint["state_dict"].items()} == expected
    assert checkpoint["vitadapter"]["backbone_fingerprint"] == task.backbone.fingerprint
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    evaluate_in_process(tmp_path / "train" / "checkpoints" / "last.ckpt", tmp_path / "eval", "trainer=cpu")
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    val = {k: v for k, v in trained.items() if k.startswith("val/")}
    assert val and val == pytest.approx({k: v for k, v in evaluated.items() if k.startswith("val/")}, nan_ok=True)


def test_fsdp_on_two_cpu_processes(tmp_path: Path, seg_data_root: Path) -> None:
    _sharded_run_equals_one_process(tmp_path, seg_data_root, "trainer=fsdp_sim")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP across GPUs needs two of them")
def test_fsdp_on_two_gpus(tmp_path: Path, seg_data_root: Path) -> None:
    _sharded_run_equals_one_process(tmp_path, seg_data_root, "trainer=fsdp", "trainer.devices=2",
                                    "trainer.precision=32-true")
