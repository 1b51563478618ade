"""predict.py draws a detection and a segmentation checkpoint's predictions; bad input names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli
from vitadapter.run.predict import list_images, read_rgb


def test_predict_draws_detections(det_demo_run: Path, det_data_root: Path, tmp_path: Path) -> None:
    inputs = sorted((det_data_root / "val2017").glob("*.jpg"))
    run_cli("predict.py", f"ckpt_path={det_demo_run / 'checkpoints' / 'last.ckpt'}",
            f"input={det_data_root / 'val2017'}", f"output={tmp_path / 'drawn'}", "score_threshold=0.0",
            f"hydra.run.dir={tmp_path / 'run'}")
    drawn = sorted((tmp_path / "drawn").glob("*.png"))
    assert [p.stem for p in drawn] == [p.stem for p in inputs]
    picture, original = np.asarray(Image.open(drawn[0])), np.asarray(Image.open(inputs[0]))
    assert picture.shape == original.shape and np.abs(picture.astype(int) - original).max() > 100


def test_predict_draws_a_segmentation_legend(seg_demo_run: Path, seg_data_root: Path, tmp_path: Path) -> None:
    image = sorted((seg_data_root / "images" / "validation").glob("*.jpg"))[0]
    run_cli("predict.py", f"ckpt_path={seg_demo_run / 'checkpoints' / 'last.ckpt'}", f"input={image}",
            f"output={tmp_path / 'drawn'}", f"hydra.run.dir={tmp_path / 'run'}")
    drawn = Image.open(tmp_path / "drawn" / f"{image.stem}.png")
    width, height = Image.open(image).size
    assert drawn.width > width and drawn.height >= height  # the legend sits to the right


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
