"""End to end through the real entry points: train.py, eval.py, sweeps, DDP on CPU, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import (EXPERIMENTS, dataset_miou, eval_config, evaluate_in_process, experiment_neck, last_logged,
                           run_cli, tiny_seg_overrides, train_in_process)
from vitadapter.inference import tta_inference
from vitadapter.run.trained import load_trained
from vitadapter.hydra_callbacks.sweep_summary import COST_KEYS, METRIC_PREFIXES

SEG_EXPERIMENTS = [e for e in EXPERIMENTS if "_seg" in e]


@pytest.fixture(scope="module")
def demo_run(seg_demo_run: Path) -> Path:
    """The shared 2-step demo_seg run (tests/conftest.py)."""
    return seg_demo_run


def test_run_directory_holds_the_contracted_files(demo_run: Path) -> None:
    assert (demo_run / ".hydra" / "config.yaml").is_file()
    assert (demo_run / "checkpoints" / "last.ckpt").is_file()
    assert list((demo_run / "checkpoints").glob("best*.ckpt"))
    assert (demo_run / "csv" / "metrics.csv").is_file()
    assert (demo_run / "training_curves.png").stat().st_size > 1000
    metrics = json.loads((demo_run / "metrics.json").read_text())
    for key in ("val/mIoU", "val/aAcc", "val/mAcc", "params/trainable", "params/total", "params/trainable_pct"):
        assert key in metrics
    assert 0 < metrics["params/trainable"] < metrics["params/total"]
    # the final figures are the ones the last validation logged
    for key in ("val/mIoU", "val/aAcc", "val/mAcc"):
        assert metrics[key] == pytest.approx(last_logged(demo_run, key), abs=1e-4)


def test_checkpoint_holds_no_frozen_weights(demo_run: Path) -> None:
    checkpoint = torch.load(demo_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    keys = list(checkpoint["state_dict"])
    backbone_keys = [k for k in keys if k.startswith("encoder.backbone.")]
    assert backbone_keys and all(".adapter." in k for k in backbone_keys)
    assert any(k.startswith("head.") for k in keys) and any(k.startswith("encoder.neck.") for k in keys)
    meta = checkpoint["vitadapter"]
    assert len(meta["backbone_fingerprint"]) == 64
    assert meta["config"]["model"]["backbone"]["name"] == "test_vit"


def test_eval_reproduces_training_and_writes_predictions(demo_run: Path, tmp_path: Path, seg_data_root: Path) -> None:
    checkpoint = demo_run / "checkpoints" / "last.ckpt"
    config = torch.load(checkpoint, map_location="cpu", weights_only=False)["vitadapter"]["config"]
    assert config["trained_on"] == "cpu"
    out = tmp_path / "eval"
    proc = run_cli("eval.py", f"ckpt_path={checkpoint}", "eval.save_predictions=true", f"hydra.run.dir={out}")
    assert "evaluating on cpu (the checkpoint was trained on cpu)" in proc.stdout + proc.stderr
    trained = json.loads((demo_run / "metrics.json").read_text())
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["val/mIoU"] == pytest.approx(trained["val/mIoU"], abs=1e-9)
    assert evaluated["val/aAcc"] == pytest.approx(trained["val/aAcc"], abs=1e-9)
    assert "precision: bf16-mixed" in (out / ".hydra" / "config.yaml").read_text()  # restored from the checkpoint
    assert "mIoU" in proc.stdout and "circle" in proc.stdout
    images = sorted((seg_data_root / "images" / "validation").glob("*.jpg"))
    pngs = sorted((out / "predictions").glob("*.png"))
    assert [p.stem for p in pngs] == [p.stem for p in images]
    prediction = np.asarray(Image.open(pngs[0]))
    assert prediction.shape == Image.open(images[0]).size[::-1]
    assert prediction.min() >= 1 and prediction.max() <= 8  # class index + 1


def test_eval_with_tta_and_overrides(demo_run: Path, tmp_path: Path) -> None:
    checkpoint = demo_run / "checkpoints" / "last.ckpt"
    overrides = ["eval.tta.flip=true", "eval.tta.scales=[0.75,1.0]", "model.inference.mode=slide",
                 "model.inference.crop_size=48", "model.inference.stride=32", "trainer.precision=32-true",
                 "eval.save_predictions=true"]
    # in process (eval.py's command line is tested above): the overrides win over the checkpoint's own config
    evaluate_in_process(checkpoint, tmp_path, *overrides)
    config = eval_config(checkpoint, tmp_path, *overrides)
    assert (config.eval.tta.flip, list(config.eval.tta.scales)) == (True, [0.75, 1.0])
    inference = config.model.inference
    assert (inference.mode, inference.crop_size, inference.stride) == ("slide", 48, 32)

    # every written prediction is the argmax of the flip + two-scale sliding-window probabilities
    datamodule, task = load_trained(checkpoint)
    datamodule.setup("validate")
    pairs = []
    with torch.no_grad():
        for index in range(len(datamodule.val_set)):
            sample = datamodule.val_set[index]
            label = torch.as_tensor(sample["mask"])
            probs = tta_inference(task, sample["image"][None], tuple(label.shape), mode="slide", crop_size=48,
                                  stride=32, scales=(0.75, 1.0), flip=True)
            written = np.asarray(Image.open(tmp_path / "predictions" / f"{sample['name']}.png")).astype(np.int64)
            assert np.array_equal(written - 1, probs.argmax(1)[0].numpy())  # ADE20K files: class index + 1
            pairs.append((written - 1, label.numpy()))
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["val/mIoU"] == pytest.approx(dataset_miou(pairs, task.num_classes), abs=1e-4)


# demo_seg runs in demo_run; demo_seg_vit_adapter in test_vit_adapter_cli
@pytest.mark.parametrize("experiment", [e for e in SEG_EXPERIMENTS if e not in ("demo_seg", "demo_seg_vit_adapter")])
def test_two_step_run_of_every_other_segmentation_experiment(experiment: str, tmp_path: Path,
                                                             seg_data_root: Path) -> None:
    train_in_process(tmp_path, f"experiment={experiment}",
                     *tiny_seg_overrides(seg_data_root, experiment_neck(experiment)))
    trained = json.loads((tmp_path / "metrics.json").read_text())
    evaluated = evaluate_in_process(tmp_path / "checkpoints" / "last.ckpt", tmp_path / "eval")
    assert {k: evaluated[k] for k in ("val/mIoU", "val/aAcc", "val/mAcc")} == \
        {k: trained[k] for k in ("val/mIoU", "val/aAcc", "val/mAcc")}


@pytest.mark.slow  # the submitit_local sweep test writes a summary by default
def test_sweep_writes_summary(tmp_path: Path, seg_data_root: Path) -> None:
    overrides = [o for o in tiny_seg_overrides(seg_data_root) if not o.startswith("model.adapter.bottleneck_dim")]
    run_cli("train.py", "-m", "experiment=demo_seg", *overrides, "model.adapter.bottleneck_dim=4,8",
            f"hydra.sweep.dir={tmp_path}")
    lines = (tmp_path / "sweep_summary.csv").read_text().splitlines()
    assert lines[0].split(",") == ["job", "model.adapter.bottleneck_dim", *METRIC_PREFIXES, "val/mIoU", *COST_KEYS]
    rows = [line.split(",") for line in lines[1:]]
    assert [r[1] for r in rows] == ["4", "8"]
    assert int(rows[0][2]) < int(rows[1][2])  # wider adapters, more trainable parameters
    assert (tmp_path / "sweep_summary.md").read_text().count("\n") == 4
    assert (tmp_path / "sweep_summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ddp_sim_validation_equals_single_process_validation(tmp_path: Path, seg_data_root: Path) -> None:
    run_cli("train.py", "experiment=demo_seg", *tiny_seg_overrides(seg_data_root), "trainer=ddp_sim",
            f"hydra.run.dir={tmp_path / 'train'}", timeout=400)
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    # the 3 validation images split 2 + 1 over the two ranks; one CPU process scores all 3
    evaluate_in_process(tmp_path / "train" / "checkpoints" / "last.ckpt", tmp_path / "eval", "trainer=cpu")
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {k: v for k, v in trained.items() if k.startswith("val/")} == \
        {k: v for k, v in evaluated.items() if k.startswith("val/")}


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    proc = run_cli("train.py", "model.adapter.botleneck_dim=3", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0 and "botleneck_dim" in proc.stderr


@pytest.mark.slow  # test_exact_resume covers resuming through train.py
def test_resume_from_last_checkpoint_continues_training(demo_run: Path, tmp_path: Path, seg_data_root: Path) -> None:
    overrides = [o for o in tiny_seg_overrides(seg_data_root) if not o.startswith("trainer.max_steps")]
    run_cli("train.py", "experiment=demo_seg", *overrides, "trainer.max_steps=4",
            f"ckpt_path={demo_run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path}")
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 4  # resumed at step 2, not restarted at 0
