"""eval.py picks the device the checkpoint was trained on when this machine has it, the CPU otherwise (the CLI check
is in test_train_eval_cli)."""

from __future__ import annotations

import pytest
import torch

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
