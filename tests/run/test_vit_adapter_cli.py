"""ViT-Adapter end to end (trained, then evaluated, in process as train.py and eval.py run them), for segmentation
and detection: eval from the checkpoint alone reproduces training, and the checkpoint holds the neck but never
the frozen ViT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import evaluate_in_process, tiny_det_overrides, tiny_seg_overrides, train_in_process


def _train_then_eval(train_args: list[str], tmp_path: Path) -> tuple[dict, dict, dict]:
    train_in_process(tmp_path / "train", *train_args)
    checkpoint = tmp_path / "train" / "checkpoints" / "last.ckpt"
    evaluate_in_process(checkpoint, tmp_path / "eval")
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    return trained, evaluated, torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def _neck_and_backbone_keys(state: dict, encoder: str) -> tuple[int, list[str]]:
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    neck = sum(v.numel() for k, v in state.items() if k.startswith(f"{encoder}.neck.")
               and k.rsplit(".", 1)[-1] not in statistics)
    return neck, [k for k in state if k.startswith(f"{encoder}.backbone.")]


def test_segmentation_demo_trains_and_eval_reproduces_it(tmp_path: Path, seg_data_root: Path) -> None:
    args = ["experiment=demo_seg_vit_adapter", *tiny_seg_overrides(seg_data_root, "vit_adapter")]
    trained, evaluated, state = _train_then_eval(args, tmp_path)
    assert (evaluated["val/mIoU"], evaluated["val/aAcc"]) == (trained["val/mIoU"], trained["val/aAcc"])
    neck, backbone_keys = _neck_and_backbone_keys(state, "encoder")
    assert backbone_keys == [] and trained["params/trainable_adapter"] == 0
    assert neck == trained["params/trainable_neck"] == evaluated["params/trainable_neck"]
    assert any(k.startswith("encoder.neck.extractors.") for k in state)
    assert not any(k.startswith("encoder.neck.injectors.") for k in state)  # the demo runs inject=false


@pytest.mark.slow  # the segmentation CLI test runs by default
def test_detection_with_the_vit_adapter_neck_and_lora_inside_the_vit(tmp_path: Path, det_data_root: Path) -> None:
    args = ["experiment=demo_det", *tiny_det_overrides(det_data_root, "mask_rcnn_light", "vit_adapter"),
            "model/adapter=lora"]
    trained, evaluated, state = _train_then_eval(args, tmp_path)
    assert evaluated["val/bbox_AP"] == trained["val/bbox_AP"] and evaluated["val/segm_AP"] == trained["val/segm_AP"]
    neck, backbone_keys = _neck_and_backbone_keys(state, "detector.model.backbone.encoder")
    assert neck == trained["params/trainable_neck"]
    assert backbone_keys and all(".lora_" in k for k in backbone_keys)  # the LoRA matrices, never the frozen ViT
    assert any(".neck.injectors.0.gamma" in k for k in state)
    assert trained["params/trainable_adapter"] == sum(state[k].numel() for k in backbone_keys)
