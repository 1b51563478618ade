"""init_from: a new run starts from another run's adapters (or neck and head), across tasks; misfits are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_seg_overrides
from vitadapter.checkpoint import TrainedCheckpoint
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.run.trained import load_trained
from vitadapter.run.warm_start import warm_start


def _fresh_seg(compose_config, root: Path, tmp_path: Path, method: str = "convpass_demo"):
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(root), f"model/adapter={method}"],
                         tmp_path)
    return build_datamodule_and_task(cfg)[1]


def test_detection_adapters_start_a_segmentation_run(compose_config, det_demo_run: Path, seg_data_root: Path,
                                                     tmp_path: Path) -> None:
    task = _fresh_seg(compose_config, seg_data_root, tmp_path)
    neck_before = {k: v.clone() for k, v in task.encoder.neck.state_dict().items()}
    source = TrainedCheckpoint.read(det_demo_run / "checkpoints" / "last.ckpt")
    adapters = {"encoder." + key.name: v for key, v in source.tensors("adapter").items()}
    assert len(adapters) == 48  # Convpass: 4 blocks x 2 branches x (down, conv, up) x (weight, bias)
    assert all(k.startswith("detector.model.backbone.encoder.") for k in source.state_dict if ".adapter." in k)

    assert warm_start(task, det_demo_run / "checkpoints" / "last.ckpt") == 48
    state = task.state_dict()
    assert all(torch.equal(state[key], value) for key, value in adapters.items())
    assert all(torch.equal(task.encoder.neck.state_dict()[k], v) for k, v in neck_before.items())  # neck stays new


def test_every_part_reproduces_the_source_model(compose_config, seg_demo_run: Path, seg_data_root: Path,
                                                tmp_path: Path) -> None:
    ckpt = seg_demo_run / "checkpoints" / "last.ckpt"
    task = _fresh_seg(compose_config, seg_data_root, tmp_path)
    warm_start(task, ckpt, ["adapter", "neck", "head"])
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(task.eval()(image), load_trained(ckpt)[1](image))


def test_misfits_are_refused(compose_config, lora_checkpoint: Path, seg_data_root: Path, tmp_path: Path) -> None:
    task = _fresh_seg(compose_config, seg_data_root, tmp_path)
    with pytest.raises(ValueError, match=r"\(method 'lora'\) does not fit this model's \['adapter'\]: missing there: "
                                         r"\['backbone\.vit\.blocks\.0\.drop_path1\.adapter.*not in this model"):
        warm_start(task, lora_checkpoint)
    with pytest.raises(ValueError, match=r"init_from.parts=\['adapters'\]: choose from \['adapter', 'neck', 'head'\]"):
        warm_start(task, lora_checkpoint, ["adapters"])
    with pytest.raises(FileNotFoundError, match="init_from.ckpt_path='nowhere.ckpt' does not exist"):
        warm_start(task, "nowhere.ckpt")
