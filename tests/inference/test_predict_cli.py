"""predict.py draws a detection and a segmentation checkpoint's predictions (in process here; through predict.py
in tests/multitask and tests/run/test_installed_commands.py); bad input names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import torch

from tests.helpers import predict_in_process
from vitadapter.inference.visualize import draw_detections, draw_segmentation
from vitadapter.run.predict import list_images, read_rgb
from vitadapter.run.trained import load_trained


def test_predict_draws_the_detections_validation_computes(det_demo_run: Path, det_data_root: Path,
                                                          tmp_path: Path) -> None:
    checkpoint = det_demo_run / "checkpoints" / "last.ckpt"
    inputs = sorted((det_data_root / "val2017").glob("*.jpg"))
    predict_in_process(checkpoint, tmp_path / "run", f"input={det_data_root / 'val2017'}", f"output={tmp_path / 'drawn'}",
                       "score_threshold=0.0")
    assert sorted(p.stem for p in (tmp_path / "drawn").glob("*.png")) == [p.stem for p in inputs]
    # the validation path: the dataset's loader and transform, the task's predict in original pixels
    datamodule, task = load_trained(checkpoint)
    datamodule.setup("validate")
    drawn_boxes = 0
    with torch.no_grad():
        for index in range(len(datamodule.val_set)):
            sample = datamodule.val_set[index]
            name = datamodule.val_set.record(index)["file_name"]
            rgb = read_rgb(det_data_root / "val2017" / name)
            detections = task.predict([sample["image"]], [sample["scale"]], [sample["orig_size"]])[0]
            expected = draw_detections(rgb, detections, task.class_names, score_threshold=0.0, alpha=0.5)
            picture = np.asarray(Image.open(tmp_path / "drawn" / f"{Path(name).stem}.png"))
            assert np.array_equal(picture, expected), name
            drawn_boxes += len(detections["boxes"])
    assert drawn_boxes > 0  # the pictures hold detections, not only the images


def test_predict_draws_the_class_map_validation_computes(seg_demo_run: Path, seg_data_root: Path,
                                                         tmp_path: Path) -> None:
    checkpoint = seg_demo_run / "checkpoints" / "last.ckpt"
    predict_in_process(checkpoint, tmp_path / "run", f"input={seg_data_root / 'images' / 'validation'}",
                       f"output={tmp_path / 'drawn'}")
    datamodule, task = load_trained(checkpoint)
    datamodule.setup("validate")
    with torch.no_grad():
        for index in range(len(datamodule.val_set)):
            sample = datamodule.val_set[index]
            rgb = read_rgb(seg_data_root / "images" / "validation" / f"{sample['name']}.jpg")
            probs = task.predict_probabilities(sample["image"][None], rgb.shape[:2])
            expected = draw_segmentation(rgb, probs.argmax(1)[0].numpy(), task.class_names, 0.5, datamodule.palette)
            drawn = Image.open(tmp_path / "drawn" / f"{sample['name']}.png")
            assert drawn.width > rgb.shape[1]  # the legend sits to the right
            assert np.array_equal(np.asarray(drawn), np.asarray(expected)), sample["name"]


def test_bad_input_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.jpg"):
        list_images(tmp_path / "nowhere.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match="holds no images"):
        list_images(tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 definitely not a jpeg")
    assert list_images(tmp_path) == [broken]
    with pytest.raises(OSError, match="broken.jpg"):
        read_rgb(broken)
