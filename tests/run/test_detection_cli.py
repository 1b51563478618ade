"""Detection end to end (train.py's demo run; eval and coco_det in process, as eval.py and train.py run them): run
files, checkpoints, reproducible COCO AP, predictions.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import evaluate_in_process, last_logged, run_cli, tiny_det_overrides, train_in_process
from vitadapter.metrics import evaluate_results_file
from vitadapter.hydra_callbacks.sweep_summary import COST_KEYS, METRIC_PREFIXES

AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
VAL_KEYS = [f"val/{t}_{m}" for t in ("bbox", "segm") for m in AP_NAMES]


def _assert_final_figures_were_logged(run_dir: Path, metrics: dict) -> None:
    """metrics.json's COCO figures are the last validation's (None where COCOeval has none, never logged)."""
    assert {k: metrics[k] for k in VAL_KEYS} == pytest.approx({k: last_logged(run_dir, k) for k in VAL_KEYS}, abs=1e-4)


def test_run_directory_holds_the_contracted_files(det_demo_run: Path) -> None:
    assert (det_demo_run / "checkpoints" / "last.ckpt").is_file()
    assert list((det_demo_run / "checkpoints").glob("best*.ckpt"))
    assert (det_demo_run / "training_curves.png").stat().st_size > 1000
    metrics = json.loads((det_demo_run / "metrics.json").read_text())
    assert set(VAL_KEYS) <= set(metrics) and 0 < metrics["params/trainable"] < metrics["params/total"]
    _assert_final_figures_were_logged(det_demo_run, metrics)
    assert metrics["val/bbox_AP"] is not None  # the validation images hold ground truth
    header = (det_demo_run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/loss_mask", "train/loss_objectness", "val/bbox_AP"} <= set(header)


def test_checkpoint_holds_no_frozen_weights(det_demo_run: Path) -> None:
    checkpoint = torch.load(det_demo_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    keys = list(checkpoint["state_dict"])
    vit_keys = [k for k in keys if k.startswith("detector.model.backbone.encoder.backbone.")]
    assert vit_keys and all(".adapter." in k for k in vit_keys)
    for part in ("backbone.encoder.neck.", "backbone.fpn.", "rpn.", "roi_heads.box_head.", "roi_heads.mask_head."):
        assert any(k.startswith(f"detector.model.{part}") for k in keys), part
    assert checkpoint["vitadapter"]["config"]["model"]["backbone"]["name"] == "test_vit"


def test_eval_reproduces_training_and_predictions_json_reproduces_eval(det_demo_run: Path, tmp_path: Path,
                                                                        det_data_root: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    # in process (eval.py's command line is tested with the segmentation demo)
    evaluate_in_process(det_demo_run / "checkpoints" / "last.ckpt", tmp_path, "eval.save_predictions=true")
    stdout = capsys.readouterr().out
    trained = json.loads((det_demo_run / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert {k: evaluated[k] for k in VAL_KEYS} == {k: trained[k] for k in VAL_KEYS}
    assert "| bbox" in stdout and "AP50" in stdout

    annotations = det_data_root / "annotations" / "instances_val2017.json"
    results_file = tmp_path / "predictions" / "predictions.json"
    rescored = evaluate_results_file(annotations, results_file)
    assert {f"val/{k}": v for k, v in rescored.items()} == {k: evaluated[k] for k in VAL_KEYS}

    truth = json.loads(annotations.read_text())
    images = {image["id"]: image for image in truth["images"]}
    results = json.loads(results_file.read_text())
    assert results and {r["category_id"] for r in results} <= {c["id"] for c in truth["categories"]}
    for r in results:  # original image ids, original pixels
        image = images[r["image_id"]]
        x, y, w, h = r["bbox"]
        assert 0 <= x <= x + w <= image["width"] and 0 <= y <= y + h <= image["height"]
        assert r["segmentation"]["size"] == [image["height"], image["width"]] and 0 <= r["score"] <= 1


def test_two_step_coco_det_run(tmp_path: Path, det_data_root: Path) -> None:
    train_in_process(tmp_path, "experiment=coco_det", *tiny_det_overrides(det_data_root))
    trained = json.loads((tmp_path / "metrics.json").read_text())
    _assert_final_figures_were_logged(tmp_path, trained)
    evaluated = evaluate_in_process(tmp_path / "checkpoints" / "last.ckpt", tmp_path / "eval")
    assert {k: evaluated[k] for k in VAL_KEYS} == {k: trained[k] for k in VAL_KEYS}


@pytest.mark.slow
def test_detection_sweep_summary_and_ddp(tmp_path: Path, det_data_root: Path) -> None:
    overrides = tiny_det_overrides(det_data_root, "mask_rcnn_light")
    run_cli("train.py", "-m", "experiment=demo_det", *overrides, "model/adapter=bitfit,ssf",
            f"hydra.sweep.dir={tmp_path / 'sweep'}")
    lines = (tmp_path / "sweep" / "sweep_summary.csv").read_text().splitlines()
    assert lines[0].split(",") == ["job", "method", *METRIC_PREFIXES, "val/bbox_AP", "val/segm_AP", *COST_KEYS]
    assert [line.split(",")[1] for line in lines[1:]] == ["bitfit", "ssf"]
    for job, line in enumerate(lines[1:]):  # the summary holds each point's final figures
        point = json.loads((tmp_path / "sweep" / str(job) / "metrics.json").read_text())
        assert float(line.split(",")[lines[0].split(",").index("val/bbox_AP")]) == pytest.approx(
            point["val/bbox_AP"], abs=5e-3)
    run_cli("train.py", "experiment=demo_det", *tiny_det_overrides(det_data_root, "mask_rcnn_light"),
            "trainer=ddp_sim", f"hydra.run.dir={tmp_path / 'ddp'}", timeout=400)
    _assert_final_figures_were_logged(tmp_path / "ddp", json.loads((tmp_path / "ddp" / "metrics.json").read_text()))


@pytest.mark.slow  # the segmentation DDP check runs by default
def test_ddp_validation_scores_what_one_process_scores(det_demo_run: Path, tmp_path: Path) -> None:
    checkpoint = det_demo_run / "checkpoints" / "last.ckpt"
    results = {}
    for trainer in ("cpu", "ddp_sim"):  # ddp_sim: the 3 validation images split 2 + 1 over two ranks
        run_cli("eval.py", f"ckpt_path={checkpoint}", f"trainer={trainer}", f"hydra.run.dir={tmp_path / trainer}",
                timeout=400)
        results[trainer] = json.loads((tmp_path / trainer / "metrics.json").read_text())
    assert {k: results["cpu"][k] for k in VAL_KEYS} == {k: results["ddp_sim"][k] for k in VAL_KEYS}
    assert results["cpu"]["val/bbox_AP"] is not None
