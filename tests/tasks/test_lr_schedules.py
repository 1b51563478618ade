"""Warm-up + poly, step and cosine learning-rate schedules, per step and per parameter group."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, PolynomialLR, SequentialLR

from vitadapter.tasks import warmup_cosine_schedule, warmup_poly_schedule, warmup_step_schedule

BASE_LRS = (1.0, 3e-4)  # two groups with their own lr, as layer decay and a method's lr make them


def _lrs(make: Callable[[torch.optim.Optimizer], LRScheduler], steps: int) -> list[tuple[float, ...]]:
    """The lr of each group at steps 0..steps (the value each optimiser step uses)."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in BASE_LRS]
    optimizer = torch.optim.SGD(groups)
    scheduler = make(optimizer)
    lrs = []
    for _ in range(steps + 1):
        lrs.append(tuple(group["lr"] for group in optimizer.param_groups))
        optimizer.step()
        scheduler.step()
    return lrs


def _assert_equal(got: list[tuple[float, ...]], expected: list[tuple[float, ...]]) -> None:
    assert len(got) == len(expected)
    for step, (a, b) in enumerate(zip(got, expected)):
        assert a == pytest.approx(b, rel=1e-12, abs=0.0), f"step {step}"


def _step_reference(step: int, total: int, warmup: int, ratio: float, milestones: tuple[float, ...],
                    gamma: float) -> float:
    """The step schedule's lr factor written out: warm-up factor times gamma per milestone passed."""
    warmup = min(warmup, total)
    drops = sum(step >= round(m * total) for m in milestones)
    return gamma**drops * (ratio + (1 - ratio) * step / warmup if step < warmup else 1.0)


@pytest.mark.parametrize(
    ("warmup", "ratio", "milestones"),
    [
        (10, 0.001, (0.5, 0.9)),  # ViTDet's shape
        (0, 0.001, (0.889, 0.963)),  # no warm-up
        (10, 1e-6, (0.1, 0.963)),  # a drop inside the warm-up multiplies it
        (60, 0.3, (0.5, 0.5)),  # warm-up longer than the run is clipped; a repeated milestone drops twice
        (5, 0.5, (0.01, 1.0)),  # drops at step 0 (rounded) and at the very end
    ],
)
def test_step_schedule_is_the_written_out_one_at_every_step(warmup: int, ratio: float,
                                                            milestones: tuple[float, ...]) -> None:
    total = 50
    got = _lrs(lambda o: warmup_step_schedule(o, total, warmup, ratio, milestones, gamma=0.1), total)
    expected = [tuple(lr * _step_reference(s, total, warmup, ratio, milestones, 0.1) for lr in BASE_LRS)
                for s in range(total + 1)]
    _assert_equal(got, expected)


def _torch_warmup_then(optimizer: torch.optim.Optimizer, warmup: int, ratio: float,
                       decay: LRScheduler) -> LRScheduler:
    return SequentialLR(optimizer, [LinearLR(optimizer, ratio, total_iters=warmup), decay], milestones=[warmup])


@pytest.mark.parametrize(("warmup", "ratio", "power"), [(10, 1e-6, 1.0), (10, 0.001, 0.9), (50, 0.1, 1.0)])
def test_poly_schedule_without_floor_is_torchs_linear_then_polynomial(warmup: int, ratio: float, power: float) -> None:
    total = 50
    got = _lrs(lambda o: warmup_poly_schedule(o, total, warmup, ratio, power), total)
    expected = _lrs(lambda o: _torch_warmup_then(o, warmup, ratio, PolynomialLR(o, max(1, total - warmup), power)),
                    total)
    _assert_equal(got, expected)


@pytest.mark.parametrize(("warmup", "ratio"), [(10, 0.001), (1, 0.5)])
def test_cosine_schedule_without_floor_is_torchs_linear_then_cosine(warmup: int, ratio: float) -> None:
    total = 50
    got = _lrs(lambda o: warmup_cosine_schedule(o, total, warmup, ratio), total)
    expected = _lrs(lambda o: _torch_warmup_then(o, warmup, ratio, CosineAnnealingLR(o, total - warmup)), total)
    _assert_equal(got, expected)


def test_poly_warms_up_from_zero_and_decays_to_its_floor_per_group() -> None:
    lrs = _lrs(lambda o: warmup_poly_schedule(o, total_steps=110, warmup_steps=10, warmup_ratio=0.0,
                                              min_lr_ratio=0.1), 110)
    expected = {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.1 + 0.9 * 0.5, 110: 0.1}
    for step, factor in expected.items():
        assert lrs[step] == pytest.approx(tuple(lr * factor for lr in BASE_LRS), rel=1e-12)


def test_cosine_decays_to_its_floor_per_group() -> None:
    lrs = _lrs(lambda o: warmup_cosine_schedule(o, 110, warmup_steps=10, min_lr_ratio=0.1), 110)
    expected = {0: 0.001, 10: 1.0, 35: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)), 60: 0.55, 110: 0.1}
    for step, factor in expected.items():
        assert lrs[step] == pytest.approx(tuple(lr * factor for lr in BASE_LRS), rel=1e-12)


def test_schedules_refuse_bad_arguments() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="max_steps"):
        warmup_cosine_schedule(optimizer, 0)
    with pytest.raises(ValueError, match="fractions"):
        warmup_step_schedule(optimizer, 100, milestones=(50,))
    with pytest.raises(ValueError, match=r"model.scheduler.warmup_ratio must be in \(0, 1\]"):
        warmup_step_schedule(optimizer, 100, warmup_ratio=0.0)


def test_step_schedule_resumes_from_its_state() -> None:
    """As Lightning resumes: a new optimiser and schedule load the saved states and continue with the same lrs."""

    def build() -> tuple[torch.optim.Optimizer, LRScheduler]:
        groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in BASE_LRS]
        optimizer = torch.optim.SGD(groups)
        return optimizer, warmup_step_schedule(optimizer, 50, warmup_steps=10, milestones=(0.3, 0.5))

    optimizer, scheduler = build()
    lrs = []
    for step in range(30):
        if step == 5:  # mid warm-up
            states = (optimizer.state_dict(), scheduler.state_dict())
        lrs.append(tuple(group["lr"] for group in optimizer.param_groups))
        optimizer.step()
        scheduler.step()
    optimizer, scheduler = build()
    optimizer.load_state_dict(states[0])
    scheduler.load_state_dict(states[1])
    resumed = []
    for _ in range(5, 30):
        resumed.append(tuple(group["lr"] for group in optimizer.param_groups))
        optimizer.step()
        scheduler.step()
    assert resumed == lrs[5:]
