"""Training runs (in process, as train.py runs them) on data where whole batches are unlabelled (ADE20K, folder_seg) or hold no object (COCO, Mask R-CNN):
the runs finish, the unlabelled batches log a loss of exactly 0, and the final metrics are finite numbers that a
re-evaluation of the last checkpoint reproduces."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from pycocotools.coco import COCO

from tests.helpers import pycocotools_bbox_ap, tiny_det_overrides, tiny_seg_overrides, train_in_process
from tests.unlabelled_data import write_coco_with_empty_images, write_sparse_ade20k, write_sparse_folder_seg
from vitadapter.run.trained import load_trained

# 3 steps of batch 2 over the 6 training images, of which 2 have labelled pixels (4 of 6 have no object): at least
# one batch holds no labelled pixel (no object), whatever the shuffle
SHORT_RUN = ["trainer.max_steps=3", "trainer.val_check_interval=3"]


def _replaced(overrides: list[str], *new: str) -> list[str]:
    """`overrides` with the keys of `new` replaced by its values."""
    keys = {item.split("=", 1)[0] for item in new}
    return [item for item in overrides if item.split("=", 1)[0] not in keys] + list(new)


def _logged_losses(run_dir: Path) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]


def _revalidated(run_dir: Path) -> dict[str, float | None]:
    """The validation metrics of the run's last checkpoint, computed again in this process."""
    datamodule, task = load_trained(run_dir / "checkpoints" / "last.ckpt")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=run_dir / "revalidate")
    trainer.validate(task, datamodule=datamodule, verbose=False)
    return task.summary_metrics()


@pytest.mark.parametrize("data", ["ade20k", "folder_seg"])
def test_segmentation_trains_through_unlabelled_batches(data: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    if data == "ade20k":  # the ADE20K recipe (UPerNet + auxiliary FCN, sliding window), labels 0 almost everywhere
        root = write_sparse_ade20k(tmp_path / "ADEChallengeData2016")
        choice = "experiment=ade20k_seg"
    else:  # your own data: masks 255 almost everywhere (the demo's FPN + auxiliary FCN)
        root = write_sparse_folder_seg(tmp_path / "my_data")
        choice = "data=folder_seg"
    overrides = _replaced(tiny_seg_overrides(root, synthetic=False), "data.crop_size=128", *SHORT_RUN)
    train_in_process(run_dir, choice, *overrides)
    losses = _logged_losses(run_dir)
    assert len(losses) == 3 and 0.0 in losses and all(math.isfinite(v) for v in losses)
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert all(math.isfinite(trained[key]) for key in ("val/mIoU", "val/aAcc", "val/mAcc"))
    again = _revalidated(run_dir)
    for key in ("val/mIoU", "val/aAcc", "val/mAcc"):
        assert again[key] == pytest.approx(trained[key], abs=1e-9)


def _pycocotools_bbox_ap(run_dir: Path, annotation_file: Path) -> float:
    """Box AP (percent) of the last checkpoint's detections on every validation image, scored by pycocotools
    directly (not through vitadapter's evaluator)."""
    datamodule, task = load_trained(run_dir / "checkpoints" / "last.ckpt")
    datamodule.setup("validate")
    results = []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            for image_id, det in zip(batch["image_ids"], task.predict(batch["images"], batch["scales"],
                                                                      batch["orig_sizes"])):
                for (x0, y0, x1, y1), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                          det["labels"].tolist()):
                    results.append({"image_id": image_id, "category_id": datamodule.contiguous_to_category_id[label],
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    assert results, "the trained detector detects nothing: pycocotools' loadRes cannot score an empty list"
    return pycocotools_bbox_ap(COCO(str(annotation_file)), results)


def test_mask_rcnn_trains_and_evaluates_with_images_without_objects(tmp_path: Path) -> None:
    # 4 of 6 training and 2 of 4 validation images list no object; training keeps them (skip_empty_train=false)
    root = write_coco_with_empty_images(tmp_path / "coco", {"train2017": [2, 3, 4, 5], "val2017": [2, 3]})
    run_dir = tmp_path / "run"
    overrides = _replaced(tiny_det_overrides(root, "mask_rcnn_light"), "data.synthetic=null",
                          "data.skip_empty_train=false", *SHORT_RUN)
    train_in_process(run_dir, "experiment=demo_det", *overrides)
    losses = _logged_losses(run_dir)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(trained["val/bbox_AP"]) and math.isfinite(trained["val/segm_AP"])
    expected = _pycocotools_bbox_ap(run_dir, root / "annotations" / "instances_val2017.json")
    assert trained["val/bbox_AP"] == pytest.approx(expected, abs=1e-9)
