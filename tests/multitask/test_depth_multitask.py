"""A depth task served beside a segmentation task on one frozen ViT: `predict(rgb, task)` gives the depth that
validation computes (the datamodule's evaluation preprocessing, then `predict_depth`), the segmentation task
predicts as alone, and the ViT's tensors are held once."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.depth_data import tiny_depth_overrides, write_nyu_fixture
from tests.helpers import tiny_seg_overrides
from vitadapter.inference.predictors import task_predictor
from vitadapter.multitask import MultiTaskModel, tensor_bytes
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.run.predict import read_rgb

DEMO_VIT = "{patch_size:8,depth:4,img_size:128}"  # demo_seg's test_vit (its model_kwargs)


def _perturb_trainable(task: torch.nn.Module, seed: int) -> None:
    """Stands in for training, so that every trained tensor (many start at zero) matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in task.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


def test_depth_beside_segmentation_predicts_what_validation_computes(compose_config, seg_data_root: Path,
                                                                     tmp_path: Path) -> None:
    nyu = write_nyu_fixture(tmp_path / "nyu")
    seg_data, seg = build_datamodule_and_task(
        compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root)], tmp_path))
    # demo_seg's ViT (so that the two can share it), a rescaling evaluation (test_scale) and flip TTA, so that the
    # served path must follow the task's own settings
    depth_data, depth = build_datamodule_and_task(compose_config("train", [
        "experiment=nyu_depth_dpt", *tiny_depth_overrides(nyu), f"++model.backbone.model_kwargs={DEMO_VIT}",
        "model.head.channels=16", "model.inference.flip=true", "data.test_scale=[80,56]"], tmp_path))
    for index, task in enumerate((seg, depth)):
        _perturb_trainable(task, index)
        task.eval()
    rgbs = {path.stem: read_rgb(path) for path in sorted((nyu / "images" / "test").glob("*.jpg"))}
    with torch.inference_mode():
        seg_alone = {name: task_predictor(seg, seg_data, torch.device("cpu"))(rgb) for name, rgb in rgbs.items()}

    model = MultiTaskModel()
    model.add_task(seg, "seg")
    model.add_task(depth, "depth")
    model.datamodules.update(seg=seg_data, depth=depth_data)
    assert model.memory_bytes()["shared"] == tensor_bytes(depth.backbone.vit.parameters())  # one ViT for both

    depth_data.setup("validate")
    assert len(depth_data.val_set) == len(rgbs) == 3
    for index in range(len(depth_data.val_set)):
        sample = depth_data.val_set[index]
        rgb = rgbs[sample["name"]]
        assert tuple(sample["image"].shape[-2:]) != rgb.shape[:2]  # rescaled into test_scale
        with torch.inference_mode():
            expected = depth.predict_depth(sample["image"][None], tuple(sample["depth"].shape))[0]
        served = model.predict(rgb, task="depth")
        assert served.shape == rgb.shape[:2] and served.dtype == torch.float32
        assert torch.equal(served, expected)
        assert float(served.min()) >= depth.min_depth and float(served.max()) <= depth.max_depth
        assert torch.equal(model.predict(rgb, task="seg"), seg_alone[sample["name"]])
    assert float(served.std()) > 0  # depths, not one constant
