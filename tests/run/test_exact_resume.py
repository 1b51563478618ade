"""Exact resume: a train.py killed with SIGKILL and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli, start_cli, tiny_seg_overrides, train_in_process
from vitadapter.data import ADE20KDataModule
from vitadapter.data.loaders import train_loader

TRAIN_IMAGES, BATCH, MAX_STEPS = 10, 2, 14  # 5 batches an epoch: the run crosses two epoch boundaries


def _overrides(data_root: Path, trainer: str = "cpu") -> list[str]:
    tiny = [o for o in tiny_seg_overrides(data_root)
            if not o.startswith(("trainer.max_steps", "trainer.val_check", "data.synthetic", "data.num_workers"))]
    return ["experiment=demo_seg", *tiny, f"trainer={trainer}", f"data.synthetic={{num_train:{TRAIN_IMAGES},num_val:2,image_size:64,seed:0}}",
            # bottleneck adapters with dropout: training steps draw from the global RNG, which resume must restore
            "model/adapter=bottleneck", "model.adapter.bottleneck_dim=8", "model.adapter.dropout=0.1",
            # persistent worker processes, whose prefetched batches a kill throws away
            "data.num_workers=2",
            f"trainer.max_steps={MAX_STEPS}", "trainer.val_check_interval=4",
            "callbacks.model_checkpoint.every_n_train_steps=1"]


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _kill_after_step(overrides: list[str], run_dir: Path, step: int, timeout: float = 180) -> int:
    """Starts train.py, SIGKILLs it (all its processes) once last.ckpt has passed `step`; the step saved."""
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = start_cli("train.py", *overrides, f"hydra.run.dir={run_dir}", out=run_dir.parent / "killed.out")
    deadline = time.monotonic() + timeout
    while not (last.is_file() and _checkpoint(last)["global_step"] >= step):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"train.py did not reach step {step}:\n{(run_dir.parent / 'killed.out').read_text()[-4000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    saved = _checkpoint(last)["global_step"]
    assert step <= saved < MAX_STEPS and not (run_dir / "metrics.json").exists()
    return saved


def _train(run_dir: Path, trainer: str, *overrides: str) -> None:
    """A whole run: in this process on one CPU (the process that is killed is train.py's own); DDP ranks are
    processes that train.py starts, so a ddp_sim run goes through train.py."""
    if trainer == "cpu":
        train_in_process(run_dir, *overrides)
    else:
        run_cli("train.py", *overrides, f"hydra.run.dir={run_dir}")


@pytest.mark.parametrize("trainer", ["cpu", pytest.param("ddp_sim", marks=pytest.mark.slow)])
def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path: Path, trainer: str) -> None:
    overrides = _overrides(tmp_path / "data", trainer)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _train(whole, trainer, *overrides)
    ranks = 2 if trainer == "ddp_sim" else 1
    saved = _kill_after_step(overrides, killed, step=TRAIN_IMAGES // (BATCH * ranks) + 1)  # in the second epoch
    _train(killed, trainer, *overrides, "ckpt_path=last")

    expected, resumed = (_checkpoint(d / "checkpoints" / "last.ckpt") for d in (whole, killed))
    assert resumed["global_step"] == expected["global_step"] == MAX_STEPS
    assert expected["state_dict"].keys() == resumed["state_dict"].keys()
    differing = [k for k, v in expected["state_dict"].items() if not torch.equal(v, resumed["state_dict"][k])]
    assert not differing, f"resumed at step {saved}: {len(differing)} tensors differ, e.g. {differing[:3]}"
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (whole, killed)]
    assert {k: v for k, v in metrics[0].items() if k.startswith("val/")} == \
        {k: v for k, v in metrics[1].items() if k.startswith("val/")}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_loader_stopped_after_any_batch_continues_with_the_same_samples(tmp_path: Path, num_workers: int) -> None:
    """Epoch ends included, with Lightning's order of calls."""
    datamodule = ADE20KDataModule(str(tmp_path), batch_size=BATCH, num_workers=num_workers, crop_size=32,
                                  train_scale=(64, 64), synthetic={"num_train": 6, "num_val": 1, "image_size": 64})
    datamodule.prepare_data()
    datamodule.setup("fit")
    per_epoch, epochs = 6 // BATCH, 3

    def batches(state: dict | None = None, start_epoch: int = 0, stop_after: int = -1) -> tuple[list, dict | None]:
        loader = train_loader(datamodule.train_set, BATCH, num_workers, False, "training", seed=7)
        if state is not None:
            loader.load_state_dict(state)
        seen = []
        for epoch in range(start_epoch, epochs):
            if epoch == start_epoch:  # Lightning's setup_data creates the iterator, then the epoch is set
                iterator = iter(loader)
                loader.sampler.set_epoch(epoch)
            else:
                loader.sampler.set_epoch(epoch)
                iterator = iter(loader)
            for batch in iterator:
                seen.append((batch["name"], batch["image"]))
                if len(seen) == stop_after:
                    return seen, loader.state_dict()
        return seen, None

    uninterrupted, _ = batches()
    assert len(uninterrupted) == epochs * per_epoch
    for stop in range(1, 2 * per_epoch + 1):
        first, state = batches(stop_after=stop)
        rest, _ = batches(state, start_epoch=stop // per_epoch)  # Lightning's epoch after `stop` batches
        resumed = first + rest
        assert [n for n, _ in resumed] == [n for n, _ in uninterrupted], f"stopped after batch {stop}"
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(resumed, uninterrupted)), f"stopped after batch {stop}"
