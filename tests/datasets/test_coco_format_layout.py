"""`data=coco` on any COCO-format dataset: own annotation files and image folders, in a non-standard layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import pytest

from tests.helpers import tiny_det_overrides
from vitadapter.data import write_synthetic_coco
from vitadapter.run.build import build_datamodule_and_task


def _own_layout(root: Path) -> Path:
    """The synthetic COCO set moved to `root/labels/{train,val}.json` and `root/pictures/{training,validation}/`."""
    write_synthetic_coco(root / "coco", num_train=4, num_val=3, image_size=96, seed=0)
    (root / "labels").mkdir()
    for split, folder, name in (("train2017", "training", "train"), ("val2017", "validation", "val")):
        shutil.move(root / "coco" / "annotations" / f"instances_{split}.json", root / "labels" / f"{name}.json")
        shutil.move(root / "coco" / split, root / "pictures" / folder)
    shutil.rmtree(root / "coco")
    return root


def test_coco_config_reads_own_annotation_files_and_image_folders(compose_config, tmp_path) -> None:
    root = _own_layout(tmp_path / "mine")
    files = ["data.train_ann_file=labels/train.json", "data.train_img_dir=pictures/training",
             f"data.val_ann_file={root / 'labels' / 'val.json'}", "data.val_img_dir=pictures/validation"]
    overrides = [o for o in tiny_det_overrides(root, "mask_rcnn_light") if not o.startswith("data.synthetic")]
    cfg = compose_config("train", ["experiment=demo_det", "data=coco", *overrides, *files], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg, check_data=True)
    assert datamodule.val_annotation_file == root / "labels" / "val.json"
    assert task.num_classes == datamodule.num_classes == 8  # the file's categories, not COCO's 80
    datamodule.setup("fit")
    assert datamodule.train_set.image_dir == root / "pictures" / "training" and len(datamodule.val_set) == 3
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(task, datamodule=datamodule)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
              default_root_dir=tmp_path).validate(task, datamodule=datamodule, verbose=False)
    assert "val/bbox_AP" in task.summary_metrics()

    cfg.data.val_img_dir = "pictures/nowhere"
    with pytest.raises(FileNotFoundError, match="COCO image folder not found: .*pictures/nowhere"):
        build_datamodule_and_task(cfg, check_data=True)
