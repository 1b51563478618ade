"""Resuming a run: ckpt_path=last finds the run directory's last.ckpt, and a requeued SLURM job resumes by itself."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli, tiny_seg_overrides
from vitadapter.run.resume import resume_checkpoint


def _step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]


def test_last_resumes_the_run_directory_and_a_requeued_job_resumes_itself(tmp_path: Path,
                                                                          seg_data_root: Path) -> None:
    overrides = ["experiment=demo_seg", *(o for o in tiny_seg_overrides(seg_data_root)
                                          if not o.startswith(("trainer.max_steps", "trainer.val_check")))]
    run_dir = tmp_path / "run"
    # checkpoints every step as well (the key long runs set), while the monitored metric does not exist yet
    run_cli("train.py", *overrides, "trainer.max_steps=3", "trainer.val_check_interval=100",
            "callbacks.model_checkpoint.every_n_train_steps=1", f"hydra.run.dir={run_dir}")
    assert _step(run_dir) == 3
    run_cli("train.py", *overrides, "trainer.max_steps=5", "trainer.val_check_interval=100", "ckpt_path=last",
            f"hydra.run.dir={run_dir}")
    assert _step(run_dir) == 5  # resumed at step 3 of the same directory

    # a requeued SLURM job (SLURM_RESTART_COUNT > 0) resumes from its own last.ckpt without ckpt_path
    requeued = tmp_path / "requeued"
    shutil.copytree(run_dir / "checkpoints", requeued / "checkpoints")
    env_before = os.environ.get("SLURM_RESTART_COUNT")
    os.environ["SLURM_RESTART_COUNT"] = "1"
    try:
        run_cli("train.py", *overrides, "trainer.max_steps=6", "trainer.val_check_interval=100",
                f"hydra.run.dir={requeued}")
    finally:
        if env_before is None:
            del os.environ["SLURM_RESTART_COUNT"]
        else:
            os.environ["SLURM_RESTART_COUNT"] = env_before
    assert _step(requeued) == 6


def test_last_without_a_checkpoint_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: .*checkpoints/last.ckpt does not exist"):
        resume_checkpoint("last", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path='nowhere.ckpt' does not exist"):
        resume_checkpoint("nowhere.ckpt", tmp_path)
    assert resume_checkpoint(None, tmp_path) is None
