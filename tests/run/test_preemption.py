"""Preemption of a real train.py process: a signal saves last.ckpt, the process exits 0, the run resumes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.helpers import start_cli, tiny_seg_overrides, train_in_process
from vitadapter.callbacks.preemption import Preemption

MAX_STEPS = 10000
READY_LINE = "after the current step and stop"  # logged by Preemption once its handlers are installed


def _overrides(data_root: Path, max_steps: int) -> list[str]:
    """demo_seg shrunk, run for `max_steps` with a constant lr (no schedule: a run's lr then does not depend
    on its length, so a preempted run and a shorter uninterrupted one train alike) and no validation before."""
    tiny = [o for o in tiny_seg_overrides(data_root)
            if not o.startswith(("trainer.max_steps", "trainer.val_check", "model.scheduler"))]
    return ["experiment=demo_seg", *tiny, "model.scheduler=null", f"trainer.max_steps={max_steps}",
            f"trainer.val_check_interval={max_steps}"]


def _long_run_overrides(data_root: Path) -> list[str]:
    return _overrides(data_root, MAX_STEPS)


def _start_train(run_dir: Path, data_root: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """Starts train.py in its own session (its DDP ranks included); returns the process and its output file."""
    out = run_dir.parent / f"{run_dir.name}.out"
    proc = start_cli("train.py", *_long_run_overrides(data_root), *extra, f"hydra.run.dir={run_dir}", out=out)
    return proc, out


def _wait_for_training(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while READY_LINE not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):  # it may have exited already
                os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"train.py did not start training (rc {proc.poll()}):\n{out.read_text()[-4000:]}")
        time.sleep(0.2)
    time.sleep(1.0)  # a few steps


def _wait_for_exit(proc: subprocess.Popen, out: Path, timeout: float = 60) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"train.py did not stop within {timeout} s of the signal:\n{out.read_text()[-4000:]}")


def _assert_session_ends(pgid: int, timeout: float = 30) -> None:
    """Every process of the session (a DDP job's other ranks too) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail("a process of the preempted job was still running")


def _stopped_step(run_dir: Path) -> int:
    checkpoints = run_dir / "checkpoints"
    assert [p.name for p in checkpoints.glob("*.ckpt")] == ["last.ckpt"]  # no validation ran, no last-v1.ckpt
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]  # no temporary file left
    step = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step < MAX_STEPS
    assert not (run_dir / "metrics.json").exists()  # no figures of weights that did not finish training
    return step


def test_sigterm_saves_last_checkpoint_exits_zero_and_resumes(tmp_path: Path, seg_data_root: Path) -> None:
    run_dir = tmp_path / "run"
    proc, out = _start_train(run_dir, seg_data_root)
    _wait_for_training(proc, out)
    proc.send_signal(signal.SIGTERM)
    assert _wait_for_exit(proc, out) == 0, out.read_text()[-4000:]

    step = _stopped_step(run_dir)
    log = (run_dir / "train.log").read_text()
    last = (run_dir / "checkpoints" / "last.ckpt").resolve()
    assert f"preempted by SIGTERM at step {step}: saved" in log
    assert f"resume with the same overrides plus ckpt_path={last}" in log

    resumed = tmp_path / "resumed"
    overrides = _overrides(seg_data_root, step + 2)
    train_in_process(resumed, *overrides, f"ckpt_path={last}")  # resumed in this process, as train.py resumes
    # the same run without the interruption: the resumed run ends with its weights and figures
    train_in_process(tmp_path / "whole", *overrides)
    expected, checkpoint = (torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
                            for d in (tmp_path / "whole", resumed))
    assert checkpoint["global_step"] == expected["global_step"] == step + 2
    assert expected["state_dict"].keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(v, checkpoint["state_dict"][k]) for k, v in expected["state_dict"].items())
    whole, resumed_metrics = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "whole", resumed))
    assert {k: v for k, v in whole.items() if k.startswith("val/")} == \
        {k: v for k, v in resumed_metrics.items() if k.startswith("val/")}


@pytest.mark.slow  # the single-process SIGTERM test runs by default
def test_sigusr1_to_rank_zero_stops_both_ddp_ranks_at_one_step(tmp_path: Path, seg_data_root: Path) -> None:
    run_dir = tmp_path / "run"
    proc, out = _start_train(run_dir, seg_data_root, "trainer=ddp_sim")
    _wait_for_training(proc, out)
    proc.send_signal(signal.SIGUSR1)  # rank 0 only: rank 1 is its child process
    assert _wait_for_exit(proc, out) == 0, out.read_text()[-4000:]
    _assert_session_ends(proc.pid)

    step = _stopped_step(run_dir)
    text = out.read_text()
    assert f"preempted by SIGUSR1 at step {step}: saved" in text
    assert re.search(rf"rank 1: stopped by a signal to another rank at step {step}\b", text), text[-4000:]


def test_under_slurm_sigusr1_stays_with_the_requeue_handler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """submitit (hydra/launcher=slurm) or Lightning requeue on SIGUSR1 under SLURM; SIGTERM still stops cleanly."""
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    callback = Preemption(tmp_path / "last.ckpt")
    callback.on_train_start(trainer, None)
    try:
        assert signal.getsignal(signal.SIGUSR1) is before[signal.SIGUSR1]
        assert signal.getsignal(signal.SIGTERM) == callback._handle
    finally:
        callback.on_train_end(trainer, None)
    assert {s: signal.getsignal(s) for s in before} == before
