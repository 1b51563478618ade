"""COCOPanopticDataModule: the label map before the download, the synthetic set, loaders, configs, bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from PIL import Image

from tests.datasets.datamodule_fixtures import small_datamodule, synthetic_root_fixture
from tests.helpers import CONFIGS
from vitadapter.data import COCOPanopticDataModule
from vitadapter.data.bad_samples import SKIPPED
from vitadapter.data.synthetic.panoptic_scenes import PANOPTIC_CLASSES
from vitadapter.data.synthetic.panoptic_writer import SYNTHETIC_PANOPTIC_CATEGORY_IDS

SYNTH = {"num_train": 4, "num_val": 3, "image_size": 40, "seed": 1}


def _dm(root: Path, **kwargs: object) -> COCOPanopticDataModule:
    return small_datamodule(COCOPanopticDataModule, root, {"image_size": 48, "synthetic": SYNTH}, **kwargs)


synth_root = synthetic_root_fixture(_dm, "synthetic_panoptic")


def test_coco_label_map_before_download(tmp_path: Path) -> None:
    dm = COCOPanopticDataModule(root=str(tmp_path / "coco"))
    assert dm.num_classes == 133 and sum(dm.isthing) == 80 and dm.isthing[79] and not dm.isthing[80]
    assert dm.class_names[0] == "person" and dm.class_names[80] == "banner" and dm.class_names[-1] == "rug-merged"
    assert dm.contiguous_to_category_id[132] == 200 and dm.palette is None
    assert dm.val_png_dir == tmp_path / "coco" / "annotations" / "panoptic_val2017"
    with pytest.raises(FileNotFoundError, match=r"(?s)panoptic_train2017\.json.*panoptic_annotations_trainval2017"):
        dm.check_data()


def test_synthetic_label_map_and_files_written_once(synth_root: Path) -> None:
    dm = _dm(synth_root)
    assert dm.class_names == list(PANOPTIC_CLASSES) and dm.isthing == [True] * 4 + [False] * 4
    assert list(dm.contiguous_to_category_id.values()) == list(SYNTHETIC_PANOPTIC_CATEGORY_IDS)
    assert dm.palette is not None and len(dm.palette) == 8
    files = sorted(p for p in synth_root.rglob("*") if p.is_file())
    assert len(files) == 2 * (4 + 3) + 2 + 1  # images, PNGs, two jsons, synthetic.json
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    dm.prepare_data()
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    with pytest.raises(ValueError, match="unknown data.synthetic"):
        _dm(synth_root, synthetic={"max_objects": 3})
    with pytest.raises(ValueError, match="unknown data.val_files"):
        _dm(synth_root, val_files={"annotations": "x.json"})


def test_loaders_give_list_batches(synth_root: Path) -> None:
    dm = _dm(synth_root, scale_range=(0.5, 1.5))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "masks", "labels", "iscrowd", "name", "image_id", "scale", SKIPPED}
    assert [tuple(i.shape) for i in batch["image"]] == [(3, 48, 48)] * 2
    for masks, labels, iscrowd in zip(batch["masks"], batch["labels"], batch["iscrowd"]):
        assert masks.shape[1:] == (48, 48) and masks.dtype == torch.bool and len(masks) == len(labels) == len(iscrowd)
        assert labels.dtype == torch.int64 and ((labels >= 0) & (labels < 8)).all()
    val = next(iter(dm.val_dataloader()))
    assert [tuple(p.shape) for p in val["panoptic"]] == [(40, 40)] * 2 and val["image"][0].shape == (3, 48, 48)
    assert val["file_name"] == ["000000000001.png", "000000000002.png"] and val[SKIPPED] == []
    assert all({"id", "category_id", "iscrowd", "isthing"} == set(s) for info in val["segments_info"] for s in info)


def test_a_bad_validation_png_is_skipped_and_listed(synth_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(synth_root, tmp_path / "copy"))
    bad = root / "annotations" / "panoptic_val2017" / "000000000002.png"
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(bad)
    dm = _dm(root, skip_bad_samples=True)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image_id"] == [1] and [s.file for s in batch[SKIPPED]] == [str(bad)]


def test_splits_must_share_a_label_map(synth_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(synth_root, tmp_path / "copy"))
    path = root / "annotations" / "panoptic_train2017.json"
    document = json.loads(path.read_text())
    document["categories"][0]["isthing"] = 0
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="both splits must share one label map"):
        _dm(root).setup("fit")


def test_configs_build_the_datamodule(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS / "data"), version_base="1.3"):
        synthetic = compose(config_name="synthetic_panoptic", overrides=[f"root={tmp_path}"])
        real = compose(config_name="coco_panoptic", overrides=[f"root={tmp_path}"])
    dm = instantiate(synthetic)
    assert isinstance(dm, COCOPanopticDataModule) and dm.image_size == 128 and dm.scale_range == (0.75, 1.25)
    assert dm.synthetic == {"num_train": 1000, "num_val": 100, "image_size": 128, "max_things": 5, "seed": 0}
    real_dm = instantiate(real)
    assert real_dm.synthetic is None and real_dm.image_size == 1024 and real_dm.num_classes == 133
