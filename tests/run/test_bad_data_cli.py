"""Bad data in training and evaluation runs: skipped files reported in metrics.json (from loader worker
processes, for training and validation; in process, and through train.py and eval.py for DDP ranks and COCO
under -m slow), or the run stopped by an error naming the file."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import run_cli, tiny_seg_overrides, train_in_process
from vitadapter.data.bad_samples import BadSampleError
from vitadapter.data.resumable_loading import ResumableShardSampler
from vitadapter.data.synthetic import write_synthetic_ade20k

TRUNCATED = "cannot decode the image: image file is truncated"


@pytest.fixture(scope="module")
def bad_seg_root(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tiny_seg_overrides' synthetic set (6 training, 3 validation images) with a truncated JPEG as the first
    training sample drawn, and a validation label of another size than its image."""
    root = write_synthetic_ade20k(tmp_path_factory.mktemp("bad_seg") / "ade", num_train=6, num_val=3, image_size=64,
                                  seed=0)
    # the first key of epoch 0 under train.yaml's seed 42
    first, _ = next(iter(ResumableShardSampler(range(6), num_replicas=1, rank=0, shuffle=True, seed=42)))
    train_image = sorted((root / "images" / "training").glob("*.jpg"))[first]
    data = train_image.read_bytes()
    train_image.write_bytes(data[: len(data) // 2])
    val_label = root / "annotations" / "validation" / "ADE_val_00000002.png"
    Image.open(val_label).resize((64, 50), Image.NEAREST).save(val_label)
    return {"root": root, "train_image": train_image, "val_label": val_label}


def test_skip_mode_lists_bad_training_and_validation_files_in_metrics_json(
    tmp_path: Path, bad_seg_root: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):  # what train.py writes to train.log
        train_in_process(tmp_path, "experiment=demo_seg", *tiny_seg_overrides(bad_seg_root["root"]),
                         "data.skip_bad_samples=true", "data.num_workers=2")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    train_image, val_label = str(bad_seg_root["train_image"]), str(bad_seg_root["val_label"])
    assert metrics["data/skipped_train"] == 1 and list(metrics["data/skipped_train_files"]) == [train_image]
    assert metrics["data/skipped_train_files"][train_image].startswith(TRUNCATED)
    assert metrics["data/skipped_val"] == 1
    assert metrics["data/skipped_val_files"] == {
        val_label: f"size mismatch: the label is 64x50 (WxH) but its image "
                   f"{bad_seg_root['root']}/images/validation/ADE_val_00000002.jpg is 64x64"}
    assert metrics["val/num_images"] == 2  # of 3: the bad one is reported, not scored
    log = caplog.text
    assert log.count(f"skipped bad training file {train_image}") == 1
    assert log.count(f"skipped bad validation file {val_label}") == 1  # two validations, one warning
    assert "validation scored 2 image(s) and skipped 1 bad file(s)" in log


@pytest.mark.slow
def test_ddp_ranks_gather_their_skipped_files(tmp_path: Path, bad_seg_root: dict[str, Path]) -> None:
    """Two processes: rank 0 draws the bad training image, rank 1's only validation image is the bad one."""
    run_cli("train.py", "experiment=demo_seg", *tiny_seg_overrides(bad_seg_root["root"]), "trainer=ddp_sim",
            "data.skip_bad_samples=true", f"hydra.run.dir={tmp_path}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["data/skipped_train_files"]) == [str(bad_seg_root["train_image"])]
    assert list(metrics["data/skipped_val_files"]) == [str(bad_seg_root["val_label"])]
    assert metrics["val/num_images"] == 2 and metrics["perf/infer_ms_per_image"] > 0


def test_error_mode_stops_the_run_naming_the_file_from_a_worker(tmp_path: Path, bad_seg_root: dict[str, Path]) -> None:
    with pytest.raises(BadSampleError) as raised:
        train_in_process(tmp_path, "experiment=demo_seg", *tiny_seg_overrides(bad_seg_root["root"]),
                         "data.num_workers=2")
    message = str(raised.value)  # what train.py prints, the worker's traceback included
    assert message.startswith("Caught BadSampleError in DataLoader worker process")
    assert (f"BadSampleError: bad data file {bad_seg_root['train_image']}: {TRUNCATED}" in message
            and "re-download or remove it; or set data.skip_bad_samples=true" in message), message[-3000:]
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow  # the in-process COCO drop test runs by default
def test_eval_scores_coco_without_the_skipped_image_and_reports_it(tmp_path: Path, det_demo_run: Path,
                                                                  det_data_root: Path) -> None:
    root = tmp_path / "coco"
    shutil.copytree(det_data_root, root)
    bad = root / "val2017" / "000000000003.jpg"  # alone in the second batch of 2: the task gets an empty batch
    Image.open(bad).resize((80, 96)).save(bad)
    run_dir = tmp_path / "eval"
    run_cli("eval.py", f"ckpt_path={det_demo_run / 'checkpoints' / 'last.ckpt'}", f"data.root={root}",
            "data.skip_bad_samples=true", "eval.save_predictions=true", f"hydra.run.dir={run_dir}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    annotations = root / "annotations" / "instances_val2017.json"
    assert metrics["data/skipped_val"] == 1 and metrics["val/num_images"] == 2
    assert metrics["data/skipped_val_files"] == {
        str(bad): f"the image is 80x96 (WxH) but {annotations} says 96x96, so its boxes and masks would not line up"}
    # the model ran on the two good images only (that COCOeval then scores only those is checked in
    # tests/datasets/test_bad_samples.py with perfect detections: a 2-step model's AP is 0 either way)
    predictions = json.loads((run_dir / "predictions" / "predictions.json").read_text())
    assert {p["image_id"] for p in predictions} == {1, 2}
