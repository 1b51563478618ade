"""A representative few PEFT methods end to end: trained, then evaluated from the checkpoint alone (in process, as
train.py and eval.py run them; the rest run in-process in tests/tasks); train.py's refusal to merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import evaluate_in_process, tiny_det_overrides, tiny_seg_overrides, train_in_process
from vitadapter.run.train import run_training


def _train_then_eval(train_args: list[str], tmp_path: Path, *eval_args: str) -> tuple[dict, dict, dict]:
    train_in_process(tmp_path / "train", *train_args)
    checkpoint = tmp_path / "train" / "checkpoints" / "last.ckpt"
    evaluate_in_process(checkpoint, tmp_path / "eval", *eval_args)
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    return trained, evaluated, torch.load(checkpoint, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("method", ["vpt", pytest.param("full", marks=pytest.mark.slow)])
def test_segmentation_method_trains_and_eval_reproduces_it(method: str, tmp_path: Path, seg_data_root: Path) -> None:
    args = ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root), f"model/adapter={method}"]
    trained, evaluated, checkpoint = _train_then_eval(args, tmp_path)
    assert evaluated["val/mIoU"] == trained["val/mIoU"] and evaluated["val/aAcc"] == trained["val/aAcc"]
    saved = sum(v.numel() for k, v in checkpoint["state_dict"].items()
                if k.rsplit(".", 1)[-1] not in ("running_mean", "running_var", "num_batches_tracked"))
    assert saved == trained["params/trainable"]
    size = (tmp_path / "train" / "checkpoints" / "last.ckpt").stat().st_size / 2**20
    assert trained["ckpt/size_mb"] == pytest.approx(size, rel=1e-6)


@pytest.mark.slow  # merging is checked in process for every method; this is the detection CLI path
def test_lora_detection_evaluates_merged_and_unmerged_alike(tmp_path: Path, det_data_root: Path) -> None:
    args = ["experiment=demo_det", *tiny_det_overrides(det_data_root, "mask_rcnn_light"), "model/adapter=lora"]
    trained, evaluated, checkpoint = _train_then_eval(args, tmp_path)
    assert evaluated["val/bbox_AP"] == trained["val/bbox_AP"]
    assert any(".lora_B." in k for k in checkpoint["state_dict"])
    evaluate_in_process(tmp_path / "train" / "checkpoints" / "last.ckpt", tmp_path / "merged", "model.adapter.merge=true")
    merged = json.loads((tmp_path / "merged" / "metrics.json").read_text())
    # merged weights compute the same function up to float rounding; the LoRA matrices are gone
    for key in ("val/bbox_AP", "val/bbox_AP50", "val/segm_AP"):
        assert merged[key] == pytest.approx(trained[key], abs=1e-3)
    assert merged["params/trainable"] < trained["params/trainable"]


def test_train_refuses_to_merge(compose_config, tmp_path: Path, seg_data_root: Path) -> None:
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root), "model/adapter=lora",
                                   "model.adapter.merge=true"], tmp_path)
    with pytest.raises(ValueError, match="use it with eval.py"):
        run_training(cfg)  # refused before anything is built
