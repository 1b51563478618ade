"""Tests for COCODataModule on a tiny synthetic COCO set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from omegaconf import OmegaConf

from tests.datasets.datamodule_fixtures import small_datamodule, synthetic_root_fixture
from vitadapter.data import SHAPE_CLASSES, COCODataModule
from vitadapter.data.synthetic.coco_writer import SYNTHETIC_COCO_CATEGORY_IDS
from vitadapter.metrics.coco import COCOEvaluator

SYNTH = {"num_train": 4, "num_val": 3, "image_size": 48, "seed": 0}


def _dm(root: Path, **kwargs: object) -> COCODataModule:
    return small_datamodule(COCODataModule, root, {"image_size": 64, "synthetic": SYNTH}, **kwargs)


synth_root = synthetic_root_fixture(_dm, "synthetic_coco")


def test_real_coco_label_map_before_download(tmp_path: Path) -> None:
    dm = COCODataModule(root=str(tmp_path / "coco"))
    assert dm.num_classes == 80 and dm.class_names[0] == "person" and dm.class_names[-1] == "toothbrush"
    assert dm.contiguous_to_category_id[79] == 90 and dm.mean == (0.485, 0.456, 0.406)
    assert dm.val_annotation_file == tmp_path / "coco" / "annotations" / "instances_val2017.json"
    with pytest.raises(FileNotFoundError, match="download_coco.sh"):
        dm.setup("validate")


def test_synthetic_label_map_and_hydra_lists(synth_root: Path) -> None:
    cfg = OmegaConf.create({"synthetic": SYNTH, "scale_range": [0.5, 1.5], "mean": [0.5, 0.5, 0.5]})
    dm = _dm(synth_root, synthetic=cfg.synthetic, scale_range=cfg.scale_range, mean=cfg.mean)
    assert dm.scale_range == (0.5, 1.5) and dm.mean == (0.5, 0.5, 0.5)
    assert dm.class_names == list(SHAPE_CLASSES) and dm.num_classes == 8
    assert list(dm.contiguous_to_category_id.values()) == list(SYNTHETIC_COCO_CATEGORY_IDS)
    with pytest.raises(ValueError, match="unknown data.synthetic"):
        _dm(synth_root, synthetic={"num_images": 3})


def test_prepare_data_writes_once(synth_root: Path) -> None:
    files = sorted(p for p in synth_root.rglob("*") if p.is_file())
    assert len(files) == 4 + 3 + 2 + 1  # images, two jsons, synthetic.json
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    _dm(synth_root).prepare_data()
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes


def test_train_batch(synth_root: Path) -> None:
    dm = _dm(synth_root, scale_range=(0.5, 1.5))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"images", "targets", "image_ids", "orig_sizes", "scales", "skipped"}
    assert batch["skipped"] == []  # no bad file in the set
    assert all(len(v) == 2 and isinstance(v, list) for k, v in batch.items() if k != "skipped")
    for image, target in zip(batch["images"], batch["targets"]):
        assert image.shape == (3, 64, 64)
        n = len(target["labels"])
        assert target["boxes"].shape == (n, 4) and target["masks"].shape == (n, 64, 64)
        assert target["labels"].dtype == torch.int64 and (target["labels"] < 8).all()
    assert all(size == (48, 48) for size in batch["orig_sizes"])


def test_val_batches_map_back_to_ground_truth(synth_root: Path) -> None:
    dm = _dm(synth_root, image_size=80)
    dm.setup("validate")
    evaluator = COCOEvaluator(dm.val_annotation_file, dm.contiguous_to_category_id, iou_types=("bbox",))
    seen = []
    for batch in dm.val_dataloader():
        assert batch["scales"] == [80 / 48] * len(batch["scales"])
        assert all(image.shape == (3, 80, 80) for image in batch["images"])
        assert all("masks" not in t for t in batch["targets"])
        predictions = [
            {"boxes": t["boxes"] / s, "scores": torch.ones(len(t["labels"])), "labels": t["labels"]}
            for t, s in zip(batch["targets"], batch["scales"])
        ]
        evaluator.update(batch["image_ids"], predictions)
        seen += batch["image_ids"]
    assert seen == [1, 2, 3]
    assert evaluator.compute()["bbox_AP"] == pytest.approx(100.0)


def test_set_normalization_rebuilds_datasets(synth_root: Path) -> None:
    dm = _dm(synth_root)
    dm.setup("validate")
    before = dm.val_set[0]["image"]
    dm.set_normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert dm.val_set is None
    dm.setup("validate")
    after = dm.val_set[0]["image"]
    assert after.min() >= 0.0 and after.max() <= 1.0 and not torch.allclose(before, after)


def test_val_loader_under_ddp_splits_without_repeats(synth_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = _dm(synth_root, val_batch_size=1)
    dm.setup("validate")
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(dist, "get_rank", lambda *a, _rank=rank, **k: _rank)
        loader = dm.val_dataloader()
        assert isinstance(loader.sampler, UnrepeatedDistributedSampler)
        shares.append(list(loader.sampler))
    assert sorted(shares[0] + shares[1]) == [0, 1, 2] and not set(shares[0]) & set(shares[1])


def test_batch_size_larger_than_split(synth_root: Path) -> None:
    dm = _dm(synth_root, batch_size=5)
    with pytest.raises(ValueError, match="batch_size=5"):
        dm.train_dataloader()
