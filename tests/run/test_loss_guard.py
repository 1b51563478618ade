"""A non-finite loss stops a training run with an error naming the step and the images; the last checkpoint stays
good (in process: the error is what train.py prints)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_seg_overrides, train_in_process
from vitadapter.tasks.loss_guard import NonFiniteLossError


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path,
                                                                          seg_data_root: Path) -> None:
    # lr 1e30: the first update leaves huge but finite weights, the next loss is NaN
    overrides = [o for o in tiny_seg_overrides(seg_data_root) if not o.startswith("trainer.")]
    with pytest.raises(NonFiniteLossError) as raised:
        train_in_process(tmp_path, "experiment=demo_seg", *overrides, "trainer=cpu", "trainer.precision=32-true",
                         "model.optimizer.lr=1e30", "trainer.max_steps=20", "trainer.val_check_interval=1")
    match = re.fullmatch(r"training loss is nan at step (\d+) \(batch \d+\), images \[(.*?)\]\. "
                         r"The weights are those of the step before; last checkpoint saved: (\S+)\. .*",
                         str(raised.value))
    assert match, str(raised.value)
    step, names, last = int(match.group(1)), match.group(2), Path(match.group(3))
    assert step == 1 and re.fullmatch(r"'ADE_train_\d{8}', 'ADE_train_\d{8}'", names)
    assert last == tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == step
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()
