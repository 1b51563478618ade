"""Warm-up + step and warm-up + cosine learning-rate schedules."""

from __future__ import annotations

import pytest
import torch

from vitadapter.tasks import warmup_cosine_schedule, warmup_step_schedule


def _lrs(make, steps: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_step_schedule_warms_up_then_drops_at_the_milestones() -> None:
    lrs = _lrs(lambda o: warmup_step_schedule(o, 100, warmup_steps=10, warmup_ratio=0.001, milestones=(0.5, 0.9)),
               100)
    assert lrs[0] == pytest.approx(0.001) and lrs[5] == pytest.approx(0.001 + 0.999 * 0.5)
    assert lrs[10] == lrs[49] == pytest.approx(1.0)
    assert lrs[50] == lrs[89] == pytest.approx(0.1) and lrs[90] == lrs[99] == pytest.approx(0.01)


def test_cosine_schedule_reaches_the_floor() -> None:
    lrs = _lrs(lambda o: warmup_cosine_schedule(o, 110, warmup_steps=10, min_lr_ratio=0.1), 111)
    assert lrs[0] == pytest.approx(0.001) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.55) and lrs[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_schedules_refuse_bad_arguments() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="max_steps"):
        warmup_cosine_schedule(optimizer, 0)
    with pytest.raises(ValueError, match="fractions"):
        warmup_step_schedule(optimizer, 100, milestones=(50,))
