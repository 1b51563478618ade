"""LiveBytes: the bytes of the tensors alive at once, each storage once, the weights left out."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from vitadapter.cost.live_bytes import LiveBytes


def test_peak_and_current_follow_the_storages_alive() -> None:
    weight = torch.ones(100)
    with LiveBytes(exclude=[weight]) as live:
        a = torch.ones(1000)  # 4000 bytes
        b = torch.ones(2000)  # 8000
        view = b.view(2, 1000)  # the same storage: nothing more
        weight.add_(1)  # an in-place op returns the weight: never counted
        del a
        c = torch.ones(500)  # 2000
    assert (live.peak, live.current) == (12_000, 10_000)
    del b, view, c
    assert live.current == 0


def test_fake_tensors_are_counted_as_real_ones() -> None:
    with FakeTensorMode(), LiveBytes() as live:
        x = torch.empty(1000, 1000, dtype=torch.bfloat16)
        y = x.float() * 2  # 4 MB, then another 4 MB freed at once
        del x
    assert live.peak == 2_000_000 + 8_000_000 and live.current == 4_000_000
    del y
