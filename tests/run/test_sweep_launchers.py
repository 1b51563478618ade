"""Sweeps through Hydra's submitit launcher (local processes here; SLURM on clusters), and the refusal of a DDP
sweep under the basic launcher."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli, tiny_seg_overrides, train_in_process


def test_submitit_local_sweep_runs_each_point_as_a_plain_run_would(tmp_path: Path, seg_data_root: Path) -> None:
    overrides = ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root)]
    run_cli("train.py", "-m", "hydra/launcher=submitit_local", *overrides, "model.adapter.bottleneck_dim=4,8",
            f"hydra.sweep.dir={tmp_path / 'sweep'}")
    rows = (tmp_path / "sweep" / "sweep_summary.csv").read_text().splitlines()[1:]
    assert [row.split(",")[:2] for row in rows] == [["0", "4"], ["1", "8"]]
    swept = [json.loads((tmp_path / "sweep" / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert swept[0]["params/trainable"] < swept[1]["params/trainable"]

    plain = train_in_process(tmp_path / "plain", *overrides, "model.adapter.bottleneck_dim=4")  # as train.py runs it
    assert swept[0]["val/mIoU"] == plain["val/mIoU"] and swept[0]["params/trainable"] == plain["params/trainable"]


def test_ddp_sweep_under_the_basic_launcher_is_refused(tmp_path: Path, seg_data_root: Path) -> None:
    overrides = [o for o in tiny_seg_overrides(seg_data_root) if o != "trainer=cpu"]
    proc = run_cli("train.py", "-m", "experiment=demo_seg", *overrides, "trainer=ddp_sim",
                   "model.adapter.bottleneck_dim=4,8", f"hydra.sweep.dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "cannot run under Hydra's basic launcher" in proc.stderr and "hydra/launcher=slurm" in proc.stderr
    assert not list(tmp_path.glob("*/checkpoints"))  # refused before anything trained
