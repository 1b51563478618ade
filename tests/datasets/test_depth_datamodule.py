"""DepthDataModule: training batches of crops, evaluation batches that keep each depth map at its size, the
settings the task reads, checks of the data, the synthetic set written once, and the three data configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from tests.helpers import CONFIGS
from vitadapter.data import DepthDataModule
from vitadapter.data.bad_samples import SKIPPED

SPLITS = {"train_split": {"img_dir": "images/train", "depth_dir": "annotations/train"},
          "val_split": {"img_dir": "images/test", "depth_dir": "annotations/test"}}
TEST_SIZES = [(48, 64), (37, 51), (20, 30)]


def write_nyu_layout(root: Path) -> Path:
    """NYU's mmseg layout: 4 training images of odd sizes (one grayscale, one smaller than the crop), 3 test ones."""
    for split, sizes in (("train", [(41, 57), (30, 40), (12, 20), (33, 47)]), ("test", TEST_SIZES)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for index, (h, w) in enumerate(sizes):
            rgb = np.random.default_rng(index).integers(0, 256, (h, w, 3), dtype=np.uint8)
            image = Image.fromarray(rgb).convert("L") if index == 1 else Image.fromarray(rgb)
            image.save(root / "images" / split / f"room_{index:05d}.jpg", quality=95)
            mm = np.linspace(500, 9000, h * w).reshape(h, w).astype(np.uint16)
            mm[:3, :3] = 0  # a hole
            Image.fromarray(mm).save(root / "annotations" / split / f"room_{index:05d}.png")
    return root


def datamodule(root: Path, **kwargs) -> DepthDataModule:
    settings = {"crop_size": (24, 32), "batch_size": 2, "val_batch_size": 2, "num_workers": 0, **kwargs}
    return DepthDataModule(str(root), **SPLITS, **settings)


def test_training_batches_are_crops_with_depth_in_metres(tmp_path: Path) -> None:
    dm = datamodule(write_nyu_layout(tmp_path / "nyu"))
    dm.check_data()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 32) and batch["image"].dtype == torch.float32
    assert batch["depth"].shape == (2, 24, 32) and batch["depth"].dtype == torch.float32
    assert len(batch["name"]) == 2 and batch[SKIPPED] == []
    valid = batch["depth"][batch["depth"] > 0]
    assert valid.min() >= 0.5 and valid.max() <= 9.0


def test_evaluation_batches_keep_each_depth_map_at_its_size(tmp_path: Path) -> None:
    dm = datamodule(write_nyu_layout(tmp_path / "nyu"), test_scale=(128, 96))
    batches = list(dm.val_dataloader())
    depths = [d for b in batches for d in b["depth"]]
    assert [tuple(d.shape) for d in depths] == TEST_SIZES
    assert [n for b in batches for n in b["name"]] == ["room_00000", "room_00001", "room_00002"]
    assert tuple(batches[0]["image"][0].shape) == (3, 96, 128)  # into the (128, 96) box; depth unchanged
    mm = np.array(Image.open(tmp_path / "nyu" / "annotations" / "test" / "room_00001.png")).astype(np.float64)
    assert torch.equal(depths[1], torch.from_numpy((mm / 1000).astype(np.float32)))
    assert tuple(datamodule(tmp_path / "nyu").val_dataloader().dataset[0]["image"].shape) == (3, 48, 64)


def test_attributes_the_task_reads_and_normalisation(tmp_path: Path) -> None:
    dm = datamodule(tmp_path, min_depth=0.1, max_depth=80.0, depth_scale=256, invalid_value=None, eval_crop=None,
                    crop_size=352)
    assert (dm.min_depth, dm.max_depth, dm.depth_scale, dm.invalid_value) == (0.1, 80.0, 256.0, None)
    assert dm.eval_crop is None and dm.crop_size == (352, 352) and dm.test_scale is None
    assert not hasattr(dm, "class_names")
    dm.set_normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert dm.mean == (0.5, 0.5, 0.5) and dm.std == (0.25, 0.25, 0.25)


def test_bad_settings_and_missing_data_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"need 0 < data.min_depth < data.max_depth"):
        datamodule(tmp_path, min_depth=5.0, max_depth=1.0)
    with pytest.raises(ValueError, match=r"data.eval_crop must be one of"):
        datamodule(tmp_path, eval_crop="garg")
    with pytest.raises(ValueError, match=r"data.train_split needs img_dir and depth_dir"):
        DepthDataModule(str(tmp_path), {"img_dir": "a", "ann_dir": "b"}, SPLITS["val_split"])
    with pytest.raises(ValueError, match=r"unknown data.synthetic key\(s\) \['size'\]"):
        datamodule(tmp_path, synthetic={"size": 3})
    with pytest.raises(FileNotFoundError, match=r"NYU root not found: \S+absent \(data.root\)\nget it so"):
        datamodule(tmp_path / "absent", dataset_name="NYU", layout_hint="get it so").check_data()
    root = write_nyu_layout(tmp_path / "nyu")
    (root / "annotations" / "test" / "room_00002.png").unlink()
    with pytest.raises(ValueError, match=r"1 image\(s\) without a depth map in \S+annotations/test: room_00002\.jpg"):
        datamodule(root).setup("validate")


def test_synthetic_set_is_written_once_by_prepare_data(tmp_path: Path) -> None:
    root = tmp_path / "synthetic_nyu"
    dm = datamodule(root, synthetic={"num_train": 2, "num_val": 1, "height": 24, "width": 32, "seed": 1})
    dm.check_data()  # nothing there yet: prepare_data will write it
    dm.prepare_data()
    marker = (root / "synthetic.json").stat().st_mtime_ns
    dm.prepare_data()
    assert (root / "synthetic.json").stat().st_mtime_ns == marker
    batch = next(iter(dm.val_dataloader()))
    assert batch["name"] == ["synthetic_test_00001"] and tuple(batch["depth"][0].shape) == (24, 32)


@pytest.mark.parametrize("name", ["nyu", "folder_depth", "synthetic_depth"])
def test_data_configs_build_the_datamodule(name: str, tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose("train", ["experiment=nyu_depth_linear", f"data={name}", f"data.root={tmp_path}"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, DepthDataModule) and dm.root == tmp_path
    assert (dm.min_depth, dm.max_depth, dm.invalid_value) == (1e-3, 10.0, 0.0)
    expected = {"nyu": ("eigen", (416, 544), 1000.0), "folder_depth": (None, (416, 544), 1000.0),
                "synthetic_depth": (None, (120, 160), 1000.0)}[name]
    assert (dm.eval_crop, dm.crop_size, dm.depth_scale) == expected
    assert (dm.synthetic is not None) == (name == "synthetic_depth")
