"""The debug group (`train.py debug=fast | overfit`): what it changes in every experiment, a smoke run's outputs,
and an overfitted batch whose loss falls."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from tests.helpers import CONFIGS, EXPERIMENTS, evaluate_in_process, tiny_seg_overrides
from vitadapter.run.train import run_training

# data keys a debug config sets; every other data key, and the whole model but overfit's warm-up, is the experiment's
DEBUG_DATA = {"batch_size": 4, "val_batch_size": 4, "num_workers": 0}
DEBUG_TRAINER = {
    "fast": {"max_steps": 20, "limit_val_batches": 4},
    "overfit": {"max_steps": 50, "overfit_batches": 1},
}


def _plain(cfg: DictConfig, key: str) -> dict:
    return OmegaConf.to_container(cfg[key], resolve=True)


@pytest.mark.parametrize("debug", ["fast", "overfit"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_debug_config_shrinks_the_run_and_keeps_the_experiment(
    compose_config: Callable[..., DictConfig], tmp_path: Path, experiment: str, debug: str
) -> None:
    real = compose_config("train", [f"experiment={experiment}"], tmp_path)
    cfg = compose_config("train", [f"experiment={experiment}", f"debug={debug}"], tmp_path)

    assert cfg.task_name == "debug"
    assert list(cfg.logger) == ["csv"]
    assert cfg.callbacks.model_checkpoint is None
    assert {k: v for k, v in cfg.callbacks.items() if k != "model_checkpoint"} == {
        k: v for k, v in real.callbacks.items() if k != "model_checkpoint"}

    trainer = _plain(cfg, "trainer")
    assert {k: trainer.get(k) for k in DEBUG_TRAINER[debug]} == DEBUG_TRAINER[debug]
    # validation once: none during training, train.py validates the final weights
    assert trainer["val_check_interval"] > trainer["max_steps"] and trainer["check_val_every_n_epoch"] is None
    assert trainer["log_every_n_steps"] == 1
    changed = {*DEBUG_TRAINER[debug], "val_check_interval", "log_every_n_steps"}
    assert {k: v for k, v in trainer.items() if k not in changed} == {
        k: v for k, v in _plain(real, "trainer").items() if k not in changed}  # device, precision, ... kept

    assert _plain(cfg, "data") == {**_plain(real, "data"), **DEBUG_DATA}
    model, real_model = _plain(cfg, "model"), _plain(real, "model")
    if debug == "overfit":
        assert model["scheduler"]["warmup_steps"] == 10
        real_model["scheduler"]["warmup_steps"] = 10
    assert model == real_model


@pytest.mark.parametrize("debug", ["fast", "overfit"])
def test_debug_runs_write_under_outputs_debug(debug: str) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"debug={debug}", "paths.log_dir=/logs"], return_hydra_config=True)
    assert cfg.hydra.run.dir.startswith("/logs/debug/runs/")
    assert cfg.hydra.sweep.dir.startswith("/logs/debug/multiruns/")
    assert cfg.hydra.job.name == "debug"


def _tiny_demo_seg(data_root: Path, *kept: str) -> list[str]:
    """demo_seg on test_vit and a tiny synthetic set, with the debug config's own trainer, batch and warm-up
    settings (and the experiment's own values of the `kept` keys)."""
    tiny = [o for o in tiny_seg_overrides(data_root)
            if not o.startswith(("trainer.max_steps", "trainer.val_check", "trainer.log_every", "data.batch_size",
                                 "data.val_batch_size", "data.synthetic", "model.scheduler", *kept))]
    return ["experiment=demo_seg", *tiny, "data.synthetic={num_train:8,num_val:20,image_size:64,seed:0}"]


def _logged(run_dir: Path, key: str) -> list[tuple[int, float]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]


def test_fast_run_writes_its_outputs_and_validates_once(
    compose_config: Callable[..., DictConfig], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_config("train", ["debug=fast", *_tiny_demo_seg(tmp_path / "data")], run_dir)
    with caplog.at_level(logging.INFO, logger="vitadapter.run.train"):
        returned = run_training(cfg)

    written = ["checkpoints/", "csv/", "metrics.json", "overlays/", "training_curves.png"]
    assert sorted(p.name + "/" * p.is_dir() for p in run_dir.iterdir()) == written
    assert f"outputs: {run_dir} ({', '.join(written)})" in caplog.messages
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))
    assert [step for step, _ in _logged(run_dir, "train/loss")] == list(range(20))
    assert _logged(run_dir, "val/mIoU") == [(20, pytest.approx(metrics["val/mIoU"]))]  # validated once
    assert metrics["val/num_images"] == 16  # 4 batches of 4 of the 20 validation images
    evaluated = evaluate_in_process(run_dir / "checkpoints" / "last.ckpt", tmp_path / "eval",
                                    "+trainer.limit_val_batches=4")
    assert evaluated["val/num_images"] == 16
    assert evaluated["val/mIoU"] == metrics["val/mIoU"]


def test_overfit_run_drives_the_loss_down(compose_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # demo_seg's own neck and head widths: the tiny test widths learn too slowly to show overfitting in 50 steps
    overrides = _tiny_demo_seg(tmp_path / "data", "model.head.channels", "model.neck.out_channels")
    metrics = run_training(compose_config("train", ["debug=overfit", *overrides], run_dir))

    losses = _logged(run_dir, "train/loss")
    assert [step for step, _ in losses] == list(range(50))
    assert losses[-1][1] < 0.25 * losses[0][1]
    assert metrics["val/num_images"] == 4  # the first validation batch only
