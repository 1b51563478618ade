"""The segmentation task in-process: every experiment builds, what trains, checkpoints and fingerprints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from tests.helpers import EXPERIMENTS, experiment_neck, tiny_seg_overrides
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.tasks import BackboneMismatchError


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if "_seg" in e])
def test_every_experiment_composes_and_instantiates(experiment, compose_config, tmp_path, seg_data_root) -> None:
    overrides = [f"experiment={experiment}", *tiny_seg_overrides(seg_data_root, experiment_neck(experiment))]
    cfg = compose_config("train", overrides, tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    assert task.num_classes == len(datamodule.class_names)
    assert task.run_config["model"]["backbone"]["name"] == "test_vit"
    logits = task.eval()(torch.randn(1, 3, 64, 48))
    stride = 16 if experiment_neck(experiment) == "tokens" else 4  # the linear probe: the ViT's patch grid
    assert logits.shape == (1, task.num_classes, 64 // stride, 48 // stride)


def test_adapter_and_aux_head_can_be_switched_off(compose_config, tmp_path, seg_data_root) -> None:
    overrides = ["experiment=ade20k_seg", *tiny_seg_overrides(seg_data_root), "model/adapter=none",
                 "model/aux_head=none"]
    _, task = build_datamodule_and_task(compose_config("train", overrides, tmp_path))
    assert task.encoder.method.method_name == "none" and task.aux_head is None
    trainable = {".".join(n.split(".")[:2]) for n, p in task.named_parameters() if p.requires_grad}
    assert {name.split(".")[0] if name.startswith("head") else name for name in trainable} == {"encoder.neck", "head"}


def _fit(cfg, tmp_path: Path, steps: int = 3):
    datamodule, task = build_datamodule_and_task(cfg)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path)
    return datamodule, task, trainer


def test_only_adapters_neck_heads_train_and_backbone_is_unchanged(compose_config, tmp_path, seg_data_root) -> None:
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root)], tmp_path)
    datamodule, task, trainer = _fit(cfg, tmp_path)
    frozen_keys = task.frozen_state_keys()
    before = {k: v.clone() for k, v in task.state_dict().items() if k in frozen_keys}
    trainable_before = {n: p.detach().clone() for n, p in task.named_parameters() if p.requires_grad}
    trainer.fit(task, datamodule=datamodule)
    after = task.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in frozen_keys)
    changed = {n for n, p in task.named_parameters() if p.requires_grad and not torch.equal(p, trainable_before[n])}
    prefixes = {".".join(n.split(".")[:2]) if n.startswith("encoder.") else n.split(".")[0] for n in changed}
    assert prefixes == {"encoder.backbone", "encoder.neck", "head", "aux_head"}  # demo_seg has an auxiliary head
    assert all(".adapter." in n for n in changed if n.startswith("encoder.backbone."))
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in task.parameters() if p.requires_grad}


def test_checkpoint_loads_onto_fresh_backbone_and_refuses_another(compose_config, tmp_path, seg_data_root) -> None:
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root)], tmp_path)
    datamodule, task, trainer = _fit(cfg, tmp_path)
    trainer.fit(task, datamodule=datamodule)
    path = tmp_path / "adapters.ckpt"
    trainer.save_checkpoint(path)

    _, fresh = build_datamodule_and_task(cfg)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    assert all(torch.equal(a, b) for a, b in zip(task.state_dict().values(), fresh.state_dict().values()))

    cfg.model.backbone.seed = 1
    _, other = build_datamodule_and_task(cfg)
    with pytest.raises(BackboneMismatchError) as error:
        other.on_load_checkpoint(torch.load(path, map_location="cpu", weights_only=False))
    assert task.backbone.fingerprint[:16] in str(error.value) and other.backbone.fingerprint[:16] in str(error.value)


def test_segmentation_and_detection_share_one_random_backbone(compose_config, tmp_path, seg_data_root,
                                                              det_data_root) -> None:
    """Crop 64 for segmentation, 96 px for detection: the same seed still builds the same frozen network."""
    from tests.helpers import tiny_det_overrides

    seg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root)], tmp_path)
    det = compose_config("train", ["experiment=demo_det", *tiny_det_overrides(det_data_root, "mask_rcnn_light")],
                         tmp_path)
    assert seg.data.crop_size != det.data.image_size
    assert build_datamodule_and_task(seg)[1].backbone.fingerprint == build_datamodule_and_task(det)[1].backbone.fingerprint
