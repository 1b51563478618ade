"""eval.py picks the device the checkpoint was trained on when this machine has it, the CPU otherwise, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli, tiny_seg_overrides
from vitadapter.run.evaluate import evaluation_accelerator


@pytest.mark.parametrize(("choice", "trained_on", "expected"), [
    ("checkpoint", "cpu", "cpu"),
    ("checkpoint", "cuda", "gpu" if torch.cuda.is_available() else "cpu"),
    ("checkpoint", None, "gpu" if torch.cuda.is_available() else "cpu"),
    ("cpu", "cuda", "cpu"),
    ("gpu", "cpu", "gpu"),
])
def test_evaluation_accelerator(choice: str, trained_on: str | None, expected: str) -> None:
    accelerator, reason = evaluation_accelerator(choice, trained_on)
    assert accelerator == expected
    if choice == "checkpoint" and trained_on == "cuda" and not torch.cuda.is_available():
        assert reason == "the checkpoint was trained on cuda, which this machine does not have"


def test_checkpoint_records_its_device_and_eval_reports_where_it_runs(tmp_path: Path, seg_data_root: Path) -> None:
    run_cli("train.py", "experiment=demo_seg", *tiny_seg_overrides(seg_data_root), f"hydra.run.dir={tmp_path / 'train'}")
    checkpoint = tmp_path / "train" / "checkpoints" / "last.ckpt"
    config = torch.load(checkpoint, map_location="cpu", weights_only=False)["vitadapter"]["config"]
    assert config["trained_on"] == "cpu"
    proc = run_cli("eval.py", f"ckpt_path={checkpoint}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert "evaluating on cpu (the checkpoint was trained on cpu)" in proc.stdout + proc.stderr
