"""The run's cost: step-time median, memory figures, inference timing, and the keys a real run writes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests.helpers import run_cli, tiny_seg_overrides
from vitadapter.callbacks.perf import ESTIMATE_KIND, MIB, TrainingCost, median_after_warmup
from vitadapter.run.perf import inference_copy, inference_ms_per_image

PERF_KEYS = ("perf/train_step_ms", "perf/peak_memory_mb", "perf/infer_ms_per_image", "ckpt/size_mb")


def fake_clock(times: list[float]) -> Callable[[], float]:
    """A clock that returns `times` in turn."""
    ticks: Iterator[float] = iter(times)
    return lambda: next(ticks)


def test_median_skips_the_warmup_steps() -> None:
    assert median_after_warmup([900.0, 50.0, 40.0, 10.0, 12.0, 11.0], warmup=3) == (11.0, 3)
    assert median_after_warmup([900.0, 50.0, 40.0, 10.0, 30.0], warmup=3) == (20.0, 2)
    assert median_after_warmup([900.0, 7.0], warmup=3) == (7.0, 1)  # too short: the last step only
    assert median_after_warmup([], warmup=3) == (None, 0)


def test_callback_times_batches_and_counts_saved_activations() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    module = SimpleNamespace(device=torch.device("cpu"), parameters=model.parameters, buffers=model.buffers)
    optimizer = torch.optim.AdamW(model.parameters())
    # (start, end) seconds of 5 batches: 900, 50, 40, 10, 30 ms
    meter = TrainingCost(warmup_steps=3, clock=fake_clock([0.0, 0.9, 1.0, 1.05, 2.0, 2.04, 3.0, 3.01, 4.0, 4.03]))
    x = torch.randn(32, 8)
    for index in range(5):
        meter.on_train_batch_start(None, module, None, index)
        loss = model(x).square().mean()
        meter.on_before_backward(None, module, loss)
        loss.backward()
        optimizer.step()
        meter.on_train_batch_end(None, module, None, None, index)
    meter.on_train_end(SimpleNamespace(optimizers=[optimizer]), module)

    assert meter.durations_ms == pytest.approx([900.0, 50.0, 40.0, 10.0, 30.0])
    # the first step's forward saved the input of the first Linear, the ReLU's output (saved by the ReLU
    # and the second Linear: one storage) and the output that square() reads; weights are parameters
    assert meter.saved_bytes == 32 * 8 * 4 + 32 * 16 * 4 + 32 * 4 * 4
    param_bytes = sum(p.numel() * 4 for p in model.parameters())
    state_bytes = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values())
    figures = meter.figures()
    assert figures["perf/train_step_ms"] == pytest.approx(20.0)
    assert figures["perf/train_steps_timed"] == 2
    assert figures["perf/peak_memory_kind"] == ESTIMATE_KIND
    assert figures["perf/peak_memory_mb"] * MIB == pytest.approx(meter.saved_bytes + 2 * param_bytes + state_bytes)


def test_saved_tensor_hooks_are_gone_after_the_first_step() -> None:
    model = nn.Linear(4, 4)
    module = SimpleNamespace(device=torch.device("cpu"), parameters=model.parameters)
    meter = TrainingCost(clock=fake_clock([0.0, 1.0, 2.0, 3.0]))
    meter.on_train_batch_start(None, module, None, 0)
    meter.on_train_batch_end(None, module, None, None, 0)  # no backward (a skipped step): stops counting here
    counted = meter.saved_bytes
    meter.on_train_batch_start(None, module, None, 1)
    model(torch.randn(2, 4, requires_grad=True)).sum().backward()
    meter.on_train_batch_end(None, module, None, None, 1)
    assert counted == 0 and meter.saved_bytes == 0


class CountingModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, bool, bool]] = []

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.calls.append((image.shape[0], self.training, torch.is_grad_enabled()))
        return image


def test_inference_time_is_a_median_per_image() -> None:
    model = CountingModel().eval()
    # one untimed pass, then passes of 40, 10 and 20 ms on 2 images
    clock = fake_clock([0.0, 5.0, 10.0, 10.04, 11.0, 11.01, 12.0, 12.02])
    ms = inference_ms_per_image(model, {"image": torch.zeros(2, 3, 4, 4)}, torch.device("cpu"), nullcontext,
                                clock=clock)
    assert ms == pytest.approx(10.0)  # the median pass (20 ms) over 2 images
    assert model.calls == [(2, False, False)] * 4


def test_segmentation_batches_of_lists_run_image_by_image() -> None:
    model = CountingModel().eval()
    images = [torch.zeros(3, 4, 4), torch.zeros(3, 8, 4), torch.zeros(3, 4, 8)]
    ms = inference_ms_per_image(model, {"image": images}, torch.device("cpu"), nullcontext, repeats=1,
                                clock=fake_clock([0.0, 1.0, 2.0, 2.03]))
    assert ms == pytest.approx(10.0)  # 30 ms over 3 images
    assert len(model.calls) == 6 and all(batch == 1 for batch, _, _ in model.calls)


class MergeableEncoder(nn.Module):
    def __init__(self, mergeable: bool) -> None:
        super().__init__()
        self.method = SimpleNamespace(mergeable=mergeable)
        self.merged = False

    def merge(self) -> None:
        self.merged = True


class FakeTask(nn.Module):
    def __init__(self, mergeable: bool) -> None:
        super().__init__()
        self.encoder = MergeableEncoder(mergeable)
        self.ground_truth = {"large": "shared, not copied"}


@pytest.mark.parametrize("mergeable", [True, False])
def test_inference_copy_merges_a_copy_only(mergeable: bool) -> None:
    task = FakeTask(mergeable).train()
    clone = inference_copy(task)
    assert clone.encoder.merged is mergeable and not task.encoder.merged
    assert not clone.training and task.training
    assert clone.ground_truth is task.ground_truth and clone.encoder is not task.encoder


def test_training_run_writes_its_cost(tmp_path: Path, seg_data_root: Path) -> None:
    # 3 steps: 1 warm-up, 2 timed; validation only at the end
    overrides = [o for o in tiny_seg_overrides(seg_data_root) if not o.startswith(("trainer.max_steps",
                                                                                    "trainer.val_check_interval"))]
    run_cli("train.py", "experiment=demo_seg", *overrides, "trainer.max_steps=3", "trainer.val_check_interval=3",
            "callbacks.training_cost.warmup_steps=1", f"hydra.run.dir={tmp_path}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in PERF_KEYS:
        assert isinstance(metrics[key], float) and metrics[key] > 0, key
    assert metrics["perf/train_steps_timed"] == 2
    assert metrics["perf/peak_memory_kind"] == ESTIMATE_KIND
    assert metrics["ckpt/size_mb"] == (tmp_path / "checkpoints" / "last.ckpt").stat().st_size / MIB
    # the estimate holds at least the parameters, their gradients and AdamW's two moments
    trainable, frozen = metrics["params/trainable"], metrics["params/total"] - metrics["params/trainable"]
    assert metrics["perf/peak_memory_mb"] * MIB > 4 * (4 * trainable + frozen)
