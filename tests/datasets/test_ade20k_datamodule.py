"""Tests for ADE20KDataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vitadapter.data import ADE20K_CLASSES, SYNTHETIC_CLASS_NAMES, ADE20KDataModule
from vitadapter.data.loaders import train_loader
from vitadapter.data.resumable_loading import keyed_index, sample_seed
from vitadapter.data.seg_transforms import build_train_transform

SYNTH = {"num_train": 4, "num_val": 2, "image_size": 64, "seed": 0}


def _dm(root: Path, **kwargs: object) -> ADE20KDataModule:
    args = dict(
        root=str(root),
        batch_size=2,
        num_workers=0,
        crop_size=32,
        train_scale=(64, 64),
        test_scale=(96, 48),
        synthetic=SYNTH,
    )
    return ADE20KDataModule(**{**args, **kwargs})


def test_default_class_names_are_ade20k() -> None:
    dm = ADE20KDataModule(root="data/ADEChallengeData2016", mean=None, std=None)  # as in vitadapter/configs/data/ade20k.yaml
    assert dm.class_names == list(ADE20K_CLASSES) and dm.num_classes == 150
    assert dm.mean == (0.485, 0.456, 0.406) and dm.std == (0.229, 0.224, 0.225)
    assert dm.class_names[:3] == ["wall", "building", "sky"] and dm.class_names[-1] == "flag"


def test_synthetic_defaults_to_shape_names_and_explicit_names_win(tmp_path: Path) -> None:
    assert _dm(tmp_path).class_names == list(SYNTHETIC_CLASS_NAMES)
    assert _dm(tmp_path, class_names=["a", "b"]).num_classes == 2


def test_prepare_data_writes_once(tmp_path: Path) -> None:
    dm = _dm(tmp_path / "synth")
    dm.prepare_data()
    files = sorted((tmp_path / "synth").rglob("*.*"))
    assert len(files) == 4 * 2 + 2 * 2 + 1
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    _dm(tmp_path / "synth").prepare_data()
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    _dm(tmp_path / "synth", synthetic={**SYNTH, "num_train": 2}).prepare_data()  # new parameters: rewrite
    assert len(list((tmp_path / "synth" / "images" / "training").iterdir())) == 2


def test_prepare_data_without_synthetic_does_nothing(tmp_path: Path) -> None:
    ADE20KDataModule(root=str(tmp_path / "real")).prepare_data()
    assert not (tmp_path / "real").exists()


def test_train_and_val_batches(tmp_path: Path) -> None:
    dm = _dm(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (2, 32, 32) and batch["mask"].dtype == torch.int64
    assert len(batch["name"]) == 2 and all(n.startswith("ADE_train_") for n in batch["name"])
    assert len(dm.train_dataloader()) == 2  # 4 images, batch 2, drop_last
    val = list(dm.val_dataloader())
    assert len(val) == 2 and val[0]["name"] == ["ADE_val_00000001"]
    assert isinstance(val[0]["image"], list) and val[0]["image"][0].shape == (3, 48, 48)
    assert val[0]["mask"][0].shape == (64, 64) and val[0]["mask"][0].dtype == torch.int64
    labels = torch.cat([m.flatten() for b in val for m in b["mask"]])
    assert set(labels.unique().tolist()) <= set(range(8)) | {255}


def test_validate_stage_builds_only_val(tmp_path: Path) -> None:
    dm = _dm(tmp_path)
    dm.prepare_data()
    dm.setup("validate")
    assert dm.train_set is None and dm.val_set is not None
    assert len(dm.test_dataloader()) == 2


def test_listconfig_arguments_and_normalization(tmp_path: Path) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        {"crop_size": [32, 48], "train_scale": [64, 64], "ratio_range": [0.5, 2.0], "synthetic": SYNTH}
    )
    dm = _dm(tmp_path, **cfg)
    assert dm.crop_size == (32, 48) and dm.ratio_range == (0.5, 2.0) and isinstance(dm.synthetic, dict)
    dm.set_normalization(omegaconf.OmegaConf.create([0.5, 0.5, 0.5]), (0.5, 0.5, 0.5))
    assert dm.mean == (0.5, 0.5, 0.5)
    dm.prepare_data()
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 32, 48)


def test_errors_for_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown data.synthetic"):
        _dm(tmp_path, synthetic={"num_images": 3})
    dm = _dm(tmp_path, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    with pytest.raises(ValueError, match="batch_size"):
        dm.train_dataloader()


def _crops(dm: ADE20KDataModule, num_workers: int, rank: int = 0, num_ranks: int = 1,
           epoch: int = 0) -> dict[str, torch.Tensor]:
    """Every image of one epoch of a training loader, by name."""
    loader = train_loader(dm.train_set, 1, num_workers, False, "training", seed=42, rank=rank, num_ranks=num_ranks)
    loader.sampler.set_epoch(epoch)
    return {name: image for batch in loader for name, image in zip(batch["name"], batch["image"])}


def test_augmentations_depend_on_the_sample_not_on_worker_processes(tmp_path: Path) -> None:
    dm = _dm(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    in_process, two_workers = _crops(dm, 0), _crops(dm, 2)
    assert sorted(in_process) == [f"ADE_train_{i:08d}" for i in range(1, 5)]
    assert all(torch.equal(in_process[n], two_workers[n]) for n in in_process)
    next_epoch = _crops(dm, 0, epoch=1)
    assert not any(torch.equal(in_process[n], next_epoch[n]) for n in in_process)


def test_two_ranks_draw_different_augmentations_from_one_seed() -> None:
    seeds = {sample_seed(42, rank, epoch=0, index=3) for rank in range(8)}
    assert len(seeds) == 8
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    crops = []
    for rank in (0, 1):
        tf = build_train_transform(32, scale=(64, 64), seed=0)
        keyed_index((3, sample_seed(42, rank, 0, 3)), tf)
        crops.append(tf(image=image, mask=np.zeros((64, 64), np.uint8))["image"])
    assert not np.array_equal(crops[0], crops[1])


def test_ranks_split_the_training_set(tmp_path: Path) -> None:
    dm = _dm(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    rank0, rank1 = _crops(dm, 0, rank=0, num_ranks=2), _crops(dm, 0, rank=1, num_ranks=2)
    assert len(rank0) == len(rank1) == 2 and not rank0.keys() & rank1.keys()
