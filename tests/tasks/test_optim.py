"""Parameter groups (no decay on norms/biases/scales) and the warm-up + poly schedule."""

import pytest
import torch
from torch import nn

from vitadapter.tasks import trainable_param_groups, warmup_poly_schedule


def test_groups_skip_frozen_and_split_decay() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    decay, no_decay = trainable_param_groups(model)
    assert [p.shape for p in decay["params"]] == [torch.Size([2, 4])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def test_no_trainable_parameters_is_an_error() -> None:
    with pytest.raises(ValueError, match="no trainable"):
        trainable_param_groups(nn.Linear(2, 2).requires_grad_(False))


def test_warmup_then_poly_decay() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_poly_schedule(opt, total_steps=110, warmup_steps=10, warmup_ratio=0.0, power=1.0)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5) and lrs[109] == pytest.approx(0.01)
