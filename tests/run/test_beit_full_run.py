"""BEiT fully fine-tuned: what a run logs after its last step is what eval.py computes from its last.ckpt."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from tests.helpers import evaluate_in_process, tiny_seg_overrides
from vitadapter.run.train import run_training


def test_beit_full_logged_metrics_equal_eval_of_last_checkpoint(compose_config, seg_data_root: Path,
                                                                tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = [
        "experiment=demo_seg", *tiny_seg_overrides(seg_data_root), "model/adapter=full",
        "model.backbone.name=beit_base_patch16_224", "~model.backbone.model_kwargs",
        "+model.backbone.model_kwargs={depth:4,embed_dim:32,num_heads:2}",
        # a huge lr, so that every step moves the relative-position tables enough for a stale bias (one
        # computed at an earlier validation) to change predictions: measured, it moved mIoU by 0.01 here
        "model.adapter.lr=0.5", "trainer.max_steps=3", "trainer.val_check_interval=1",
    ]
    run_training(compose_config("train", overrides, run_dir))
    evaluated = evaluate_in_process(run_dir / "checkpoints" / "last.ckpt", tmp_path / "eval")

    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        logged = [(int(row["step"]), float(row["val/mIoU"])) for row in csv.DictReader(handle) if row.get("val/mIoU")]
    assert [step for step, _ in logged[:3]] == [0, 1, 2]  # a validation after each step (logged at step - 1)
    after_last_step = logged[2][1]
    assert after_last_step == torch.tensor(evaluated["val/mIoU"], dtype=torch.float32).item()  # logged as float32
    # metrics.json of the run and of eval.py: every val/* entry (null for classes absent from the images)
    written, rewritten = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, tmp_path / "eval"))
    val_keys = sorted(key for key in rewritten if key.startswith("val/"))
    assert "val/mIoU" in val_keys and {k: written[k] for k in val_keys} == {k: rewritten[k] for k in val_keys}
