"""Checkpoints of an older format rebuild the model they were trained as; a newer format is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import get_method

from vitadapter.checkpoint import FORMAT_VERSION, load_checkpoint_file, upgrade_run_config
from vitadapter.detection import build_mask_rcnn
from vitadapter.run.trained import load_trained

CONVPASS_FIELDS = ("activation", "act_before_conv", "init", "prefix_through_conv", "dropout")


def test_a_format_1_convpass_checkpoint_rebuilds_the_form_it_was_trained_with(seg_demo_run: Path,
                                                                             tmp_path: Path) -> None:
    current = seg_demo_run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(current, map_location="cpu", weights_only=True)
    assert checkpoint["vitadapter"]["format_version"] == FORMAT_VERSION
    adapter = checkpoint["vitadapter"]["config"]["model"]["adapter"]
    assert adapter["name"] == "convpass" and adapter["activation"] == "gelu"  # demo_seg's convpass_demo
    # as the checkpoint was written before Convpass had these fields (the form convpass_demo keeps)
    del checkpoint["vitadapter"]["format_version"]
    for key in CONVPASS_FIELDS:
        del adapter[key]
    old = tmp_path / "format_1.ckpt"
    torch.save(checkpoint, old)

    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    logits = []
    for path in (current, old):
        _, task = load_trained(path)
        with torch.no_grad():
            logits.append(task(image))
    assert torch.equal(logits[0], logits[1])
    upgraded = load_checkpoint_file(old)["vitadapter"]
    assert upgraded["format_version"] == FORMAT_VERSION
    assert {k: upgraded["config"]["model"]["adapter"][k] for k in CONVPASS_FIELDS} == \
        {"activation": "gelu", "act_before_conv": False, "init": "torch", "prefix_through_conv": False, "dropout": 0.0}


def test_format_1_full_layer_decay_moves_to_the_optimizer() -> None:
    meta = {"config": {"model": {"adapter": {"name": "full", "layer_decay": 0.75}, "optimizer": {"lr": 1e-4}}}}
    upgrade_run_config(meta, "old.ckpt")
    assert meta["config"]["model"]["adapter"] == {"name": "full"}
    assert meta["config"]["model"]["optimizer"] == {"lr": 1e-4, "layer_decay": 0.75}
    assert meta["format_version"] == FORMAT_VERSION


def test_a_current_checkpoint_is_left_as_written() -> None:
    adapter = {"name": "convpass", "activation": "quick_gelu"}
    meta = {"format_version": FORMAT_VERSION, "config": {"model": {"adapter": dict(adapter)}}}
    upgrade_run_config(meta, "new.ckpt")
    assert meta["config"]["model"]["adapter"] == adapter


def test_a_newer_format_is_refused_naming_the_file() -> None:
    with pytest.raises(ValueError, match=f"future.ckpt has checkpoint format {FORMAT_VERSION + 1}, newer"):
        upgrade_run_config({"format_version": FORMAT_VERSION + 1, "config": {}}, "future.ckpt")


def test_a_detector_target_from_before_the_detection_package_builds_from_it() -> None:
    detector = {"_target_": "vitadapter.heads.detectors.build_mask_rcnn", "_partial_": True}
    meta = {"format_version": FORMAT_VERSION, "config": {"model": {"detector": detector, "adapter": {"name": "none"}}}}
    upgrade_run_config(meta, "det.ckpt")
    assert meta["config"]["model"]["detector"]["_target_"] == "vitadapter.detection.build_mask_rcnn"
    assert get_method(meta["config"]["model"]["detector"]["_target_"]) is build_mask_rcnn
