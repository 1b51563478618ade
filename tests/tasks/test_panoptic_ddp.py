"""Panoptic training and evaluation on several processes: a 2-process DDP step (gloo, each rank half the batch) of
PanopticTask trains exactly as one process on the whole batch, with crowds, void and a rank whose images have no
segment; eval.py under trainer=ddp_sim scores and writes what one process does."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from tests.helpers import compose_at, evaluate_in_process, run_cli, tiny_mask_classification_overrides
from vitadapter.data.coco_panoptic_format import read_panoptic_png
from vitadapter.run.build import build_datamodule_and_task


def _task(data_root: str, out: str) -> nn.Module:
    # a LayerNorm neck: BatchNorm's batch statistics would differ between half a batch and the whole one
    overrides = ["experiment=demo_panoptic", *tiny_mask_classification_overrides(Path(data_root), "multilevel")]
    torch.manual_seed(0)  # the same initial weights in every process
    return build_datamodule_and_task(compose_at("train", overrides, Path(out)))[1].train()


def _batch() -> dict[str, list]:
    """4 images: things and stuff with void between; a crowd beside stuff; nothing (all void); only a crowd. The
    second rank's half has no segment to learn."""
    generator = torch.Generator().manual_seed(1)
    masks = [torch.zeros(n, 64, 64, dtype=torch.bool) for n in (3, 2, 0, 1)]
    masks[0][0, :30], masks[0][1, 40:, :20], masks[0][2, 40:, 30:60] = True, True, True
    masks[1][0, :, :40], masks[1][1, 10:30, 45:60] = True, True
    masks[3][0, 20:40, 20:40] = True
    return {"image": list(torch.randn(4, 3, 64, 64, generator=generator)), "masks": masks,
            "labels": [torch.tensor([5, 0, 2]), torch.tensor([6, 1]), torch.zeros(0, dtype=torch.int64),
                       torch.tensor([3])],
            "iscrowd": [torch.tensor([False, False, False]), torch.tensor([False, True]), torch.zeros(0, dtype=bool),
                        torch.tensor([True])],
            "name": ["a", "b", "c", "d"]}


class _Step(nn.Module):
    """The training step as DDP wraps a module: forward returns the loss."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, batch: dict[str, list]) -> torch.Tensor:
        return self.task.training_step(batch, 0)


def _rank(rank: int, port: int, data_root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = nn.parallel.DistributedDataParallel(_Step(_task(data_root, f"{out}/cfg{rank}")))
        half = {key: values[2 * rank:2 * rank + 2] for key, values in _batch().items()}
        losses = []
        for _ in range(2):  # a second step fails if a trained tensor got no gradient (find_unused_parameters=false)
            model.zero_grad()
            loss = model(half)
            loss.backward()
            losses.append(loss.detach())
        torch.save({"loss": losses[-1], "grads": {n: p.grad for n, p in model.module.task.named_parameters()
                                                  if p.requires_grad}}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # ~30 s: two processes import and build everything (tests/heads/test_mask2former_ddp.py is the fast one)
def test_two_process_step_equals_one_process_on_the_global_batch(panoptic_data_root: Path, tmp_path: Path) -> None:
    mp.spawn(_rank, args=(_free_port(), str(panoptic_data_root), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    task = _task(str(panoptic_data_root), str(tmp_path / "single"))
    loss = task.training_step(_batch(), 0)
    loss.backward()
    assert loss.item() > 0 and ranks[1]["loss"].item() == 0.0  # the second rank's half has nothing to learn
    # DDP averages the ranks' gradients, so the ranks' mean loss is what trains
    assert torch.allclose((ranks[0]["loss"] + ranks[1]["loss"]) / 2, loss.detach(), rtol=1e-5)
    for name, param in task.named_parameters():
        if param.requires_grad:
            assert torch.equal(ranks[0]["grads"][name], ranks[1]["grads"][name]), name
            assert torch.allclose(ranks[0]["grads"][name], param.grad, rtol=1e-4, atol=1e-7), name


@pytest.mark.slow
def test_ddp_sim_training_and_evaluation_score_what_one_process_scores(panoptic_data_root: Path,
                                                                       tmp_path: Path) -> None:
    """train.py under trainer=ddp_sim: its logged PQ (the 3 validation images split 2 + 1 over the ranks) is what
    one process's eval.py scores on its checkpoint; eval.py under ddp_sim writes the same results files."""
    overrides = ["experiment=demo_panoptic", *tiny_mask_classification_overrides(panoptic_data_root)]
    run_cli("train.py", *overrides, "trainer=ddp_sim", f"hydra.run.dir={tmp_path / 'train'}", timeout=400)
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    checkpoint = tmp_path / "train" / "checkpoints" / "last.ckpt"
    every_query = ["model.object_mask_threshold=0.0", "model.overlap_threshold=0.0", "eval.save_predictions=true"]
    single = evaluate_in_process(checkpoint, tmp_path / "one", "trainer=cpu")
    assert {k: v for k, v in trained.items() if k.startswith("val/")} == pytest.approx(
        {k: v for k, v in json.loads((tmp_path / "one" / "metrics.json").read_text()).items() if k.startswith("val/")})
    assert single["val/num_images"] == 3
    evaluate_in_process(checkpoint, tmp_path / "one_files", "trainer=cpu", *every_query)
    run_cli("eval.py", f"ckpt_path={checkpoint}", "trainer=ddp_sim", *every_query, f"hydra.run.dir={tmp_path / 'two'}",
            timeout=400)
    files = {name: tmp_path / name / "predictions" / "panoptic_predictions.json" for name in ("one_files", "two")}
    assert json.loads(files["one_files"].read_text()) == json.loads(files["two"].read_text())
    for annotation in json.loads(files["two"].read_text())["annotations"]:
        pngs = [read_panoptic_png(path.with_suffix("") / annotation["file_name"]) for path in files.values()]
        assert np.array_equal(*pngs)
