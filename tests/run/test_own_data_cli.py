"""Datasets other than ADE20K, run in process as `train.py data=NAME data.root=...` and then `eval.py
eval.save_predictions=true` run them (your own data, and Pascal VOC for a standard dataset's label convention)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.datasets.seg_layouts import FOLDER_CLASSES, write_folder_seg, write_pascal_voc
from tests.helpers import evaluate_in_process, tiny_seg_overrides, train_in_process

# config -> (fixture writer, class names or count, folder of the validation masks, val split file)
CASES = {
    "folder_seg": (write_folder_seg, FOLDER_CLASSES, "masks/val", None),
    "pascal_voc": (write_pascal_voc, 21, "SegmentationClass", "ImageSets/Segmentation/val.txt"),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "pascal_voc" else n for n in CASES])
def test_trains_evaluates_and_writes_the_datasets_label_values(name: str, tmp_path: Path) -> None:
    write, classes, mask_dir, split_file = CASES[name]
    root = write(tmp_path / "data")
    run_dir = tmp_path / "train"
    train_in_process(run_dir, f"data={name}", *tiny_seg_overrides(root, synthetic=False))
    trained = json.loads((run_dir / "metrics.json").read_text())
    per_class = {k for k in trained if k.startswith("val/IoU/")}
    num_classes = classes if isinstance(classes, int) else len(classes)
    assert len(per_class) == num_classes
    if not isinstance(classes, int):
        assert per_class == {f"val/IoU/{c}" for c in classes}
        # classes.txt's names and colours are kept in the checkpoint, which then rebuilds without the dataset
        data = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["vitadapter"]["config"]["data"]
        assert data["class_names"] == classes and data["palette"] == [[0, 0, 0], [255, 0, 0], [0, 255, 0]]

    out = tmp_path / "eval"
    evaluate_in_process(run_dir / "checkpoints" / "last.ckpt", out, "eval.save_predictions=true")
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["val/mIoU"] == pytest.approx(trained["val/mIoU"], abs=1e-4)
    stems = ((root / split_file).read_text().split() if split_file else
             [p.stem for p in (root / mask_dir).glob("*.png")])
    assert sorted(p.stem for p in (out / "predictions").glob("*.png")) == sorted(stems)
    for stem in stems:
        written = np.array(Image.open(out / "predictions" / f"{stem}.png"))
        assert written.shape == np.array(Image.open(root / mask_dir / f"{stem}.png")).shape
        assert written.max() < num_classes  # class indices (VOC: 0 = background), no ADE20K +1
