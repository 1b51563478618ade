"""Mask2Former's loss under DDP: a step on 2 processes (gloo, each half the batch, DistributedDataParallel averaging
the gradients as trainer=ddp_sim does) trains exactly as one process on the whole batch. Each normalisation counted
per process instead would not (checked too, so the comparison can fail)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vitadapter.heads.mask2former import Mask2FormerHead

K, CHANNELS = 4, 16


def _head() -> Mask2FormerHead:
    torch.manual_seed(0)  # the same initial weights in every process
    return Mask2FormerHead(CHANNELS, K, channels=32, num_queries=5, decoder_layers=2, pixel_decoder_layers=1, heads=4,
                           decoder_feedforward=32, pixel_decoder_feedforward=32, loss={"train_num_points": None})


def _batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """4 images, one rank's half holding 1 and 3 classes, the other's 2 classes and none at all (all unlabelled).
    64 px: the stride-32 level is 2×2 (a 1×1 level after GroupNorm of one channel per group carries no gradient but
    rounding noise)."""
    generator = torch.Generator().manual_seed(1)
    pyramid = {f"s{s}": torch.randn(4, CHANNELS, 64 // s, 64 // s, generator=generator) for s in (4, 8, 16, 32)}
    labels = torch.full((4, 64, 64), 255)
    labels[0, 8:40, 8:40] = 1
    labels[1, :32] = 0
    labels[1, 32:, :32] = 2
    labels[1, 32:, 32:] = 3
    labels[2, :, :24] = 3
    labels[2, :, 24:40] = 1
    return pyramid, labels


class _Loss(nn.Module):
    """The training step's loss as DDP wraps a module: forward returns the loss."""

    def __init__(self, head: Mask2FormerHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, pyramid: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.head.segmentation_loss(pyramid, labels)["loss"]


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = nn.parallel.DistributedDataParallel(_Loss(_head()))
        pyramid, labels = _batch()
        half = slice(2 * rank, 2 * rank + 2)
        loss = model({k: v[half] for k, v in pyramid.items()}, labels[half])
        loss.backward()
        torch.save({"loss": loss.detach(), "grads": {n: p.grad for n, p in model.module.named_parameters()}},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_step_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    single = _Loss(_head())
    pyramid, labels = _batch()
    loss = single(pyramid, labels)
    loss.backward()
    # the step's loss: DDP averages the ranks' gradients, so the ranks' mean is what trains
    assert torch.allclose((ranks[0]["loss"] + ranks[1]["loss"]) / 2, loss.detach(), rtol=1e-5)
    for name, param in single.named_parameters():
        assert torch.equal(ranks[0]["grads"][name], ranks[1]["grads"][name]), name  # DDP synchronised them
        assert torch.allclose(ranks[0]["grads"][name], param.grad, rtol=1e-4, atol=1e-6), name

    # per-process normalisation (each rank its own masks and class weights) trains something else
    local = [_Loss(_head())({k: v[h] for k, v in pyramid.items()}, labels[h]).detach()
             for h in (slice(0, 2), slice(2, 4))]
    assert not torch.allclose((local[0] + local[1]) / 2, loss.detach(), rtol=1e-3)
