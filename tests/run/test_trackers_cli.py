"""Experiment trackers through train.py, offline: one tiny run logs to CSV, TensorBoard, W&B and MLflow at
once; each tracker's own files are read back (metrics and the prediction overlays)."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli, tiny_seg_overrides
from vitadapter.overlays.draw import PANEL_GAP
from vitadapter.inference.visualize import blend_class_map, class_palette

NUM_OVERLAYS = 2  # of the 3 validation images
STEP = 2  # the run's single validation step (trainer.max_steps=2)


@pytest.fixture(scope="module")
def tracker_run(tmp_path_factory: pytest.TempPathFactory, seg_data_root: Path) -> Path:
    """A 2-step segmentation run with logger=[tensorboard,wandb,mlflow]; its run directory (mlruns/ beside it)."""
    base = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")  # as logger.wandb.offline=true sets it; no account, no network
        for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            env.setenv(key, str(base / "wandb_home"))
        env.setenv("WANDB_DISABLE_GIT", "true")
        env.setenv("WANDB_DISABLE_CODE", "true")
        env.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the logger must allow the file store by itself
        run_cli("train.py", *tiny_seg_overrides(seg_data_root), "logger=[tensorboard,wandb,mlflow]",
                f"logger.mlflow.tracking_uri=file:{base / 'mlruns'}",
                f"callbacks.prediction_overlays.num_images={NUM_OVERLAYS}", f"hydra.run.dir={base / 'run'}")
    return base / "run"


def _final_miou(run_dir: Path) -> float:
    return json.loads((run_dir / "metrics.json").read_text())["val/mIoU"]


def _overlays(run_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((run_dir / "overlays" / f"step_{STEP}").glob("*.png"))}


def _pixels(source: Path | bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(source) if isinstance(source, bytes) else source).convert("RGB"))


def test_overlays_show_the_first_validation_images_truth_and_prediction(tracker_run: Path, seg_data_root: Path) -> None:
    names = sorted(p.stem for p in (seg_data_root / "images" / "validation").glob("*.jpg"))[:NUM_OVERLAYS]
    assert list(_overlays(tracker_run)) == names
    assert [p.name for p in (tracker_run / "overlays").iterdir()] == [f"step_{STEP}"]
    num_classes = sum(1 for key in json.loads((tracker_run / "metrics.json").read_text()) if key.startswith("val/IoU/"))
    colors = np.array(class_palette(num_classes), dtype=np.float32)
    for name, path in _overlays(tracker_run).items():
        photo_file = _pixels(seg_data_root / "images" / "validation" / f"{name}.jpg")
        label = np.asarray(Image.open(seg_data_root / "annotations" / "validation" / f"{name}.png")).astype(np.int64)
        truth_map = np.where(label == 0, 255, label - 1)  # reduce_zero_label
        height, width = label.shape
        picture = _pixels(path)
        assert picture.shape[0] >= height and picture.shape[1] > 3 * width + 2 * PANEL_GAP  # 3 panels + legend
        photo, truth, predicted = (picture[:height, i * (width + PANEL_GAP):i * (width + PANEL_GAP) + width]
                                   for i in range(3))
        assert np.abs(photo.astype(int) - photo_file).max() <= 1  # the validation image, un-normalised
        assert np.array_equal(truth, blend_class_map(photo, truth_map, num_classes, 0.5, 255))
        # every predicted pixel is the image blended with one class colour
        candidates = np.clip(0.5 * photo[:, :, None].astype(np.float32) + 0.5 * colors + 0.5, 0, 255).astype(np.uint8)
        assert (candidates == predicted[:, :, None]).all(axis=-1).any(axis=-1).all()


def test_tensorboard_holds_the_overlays_and_the_metric(tracker_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracker_run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert events.Scalars("val/mIoU")[-1].value == pytest.approx(_final_miou(tracker_run), abs=1e-5)
    for name, path in _overlays(tracker_run).items():
        image = events.Images(f"val/overlays/{name}")[-1]
        assert image.step == STEP
        assert np.array_equal(_pixels(image.encoded_image_string), _pixels(path))


def _wandb_records(path: Path) -> Iterator[object]:
    """The records of a W&B `.wandb` transaction log (LevelDB log format: 32 KiB blocks of chunked records)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_offline_run_holds_the_overlays_and_the_metric(tracker_run: Path) -> None:
    [run] = (tracker_run / "wandb").glob("offline-run-*")
    rows = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for record in _wandb_records(next(run.glob("run-*.wandb"))) if record.WhichOneof("record_type") == "history"]
    assert [r["val/mIoU"] for r in rows if "val/mIoU" in r][-1] == pytest.approx(_final_miou(tracker_run), abs=1e-5)
    for name, path in _overlays(tracker_run).items():
        # an image's history entry is flattened: <key>/filenames, <key>/width, ...
        [logged, *_] = [r for r in reversed(rows) if f"val/overlays/{name}/filenames" in r]
        assert logged["trainer/global_step"] == STEP
        [media] = logged[f"val/overlays/{name}/filenames"]
        assert np.array_equal(_pixels(run / "files" / media), _pixels(path))


def test_mlflow_file_store_holds_the_metric_and_the_overlays(tracker_run: Path) -> None:
    [run] = [p for p in (tracker_run.parent / "mlruns").glob("*/*") if (p / "metrics").is_dir()]
    assert "name: vitadapter" in (run.parent / "meta.yaml").read_text()
    assert (run / "tags" / "run_dir").read_text() == str(tracker_run)
    _, value, step = (run / "metrics" / "val" / "mIoU").read_text().splitlines()[-1].split()  # timestamp value step
    assert float(value) == pytest.approx(_final_miou(tracker_run), abs=1e-5) and int(step) == STEP
    for name, path in _overlays(tracker_run).items():
        artifact = run / "artifacts" / "val" / "overlays" / f"step_{STEP}" / f"{name}.png"
        assert artifact.read_bytes() == path.read_bytes()


def test_a_detection_run_draws_its_validation_images(det_demo_run: Path, det_data_root: Path) -> None:
    images = json.loads((det_data_root / "annotations" / "instances_val2017.json").read_text())["images"]
    overlays = _overlays(det_demo_run)
    assert sorted(overlays) == sorted(f"image_{image['id']}" for image in images)  # 3 images, num_images=4
    for image in images:
        picture = _pixels(overlays[f"image_{image['id']}"])
        assert picture.shape == (image["height"], 3 * image["width"] + 2 * PANEL_GAP, 3)
        photo = picture[:, :image["width"]]
        original = _pixels(det_data_root / "val2017" / image["file_name"])
        assert np.abs(photo.astype(int) - original).mean() < 2  # the validation image, un-normalised
        truth = picture[:, image["width"] + PANEL_GAP:2 * image["width"] + PANEL_GAP]
        assert not np.array_equal(truth, photo)  # ground-truth boxes drawn
