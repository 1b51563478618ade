"""The run's cost: step-time median and its timing window, memory figures, what inference timing runs, and the keys
a real run writes. (How long things take is measured by the benchmarks in scripts/, not asserted here.)"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from tests.helpers import tiny_det_overrides, tiny_seg_overrides, train_in_process
from vitadapter.cost.inference_cost import configured_inference, inference_ms_per_image, median_ms_per_image
from vitadapter.cost.training_cost import CUDA_KIND, ESTIMATE_KIND, MIB, TrainingCost, median_after_warmup
from vitadapter.inference import tta_inference
from vitadapter.run.build import build_datamodule_and_task

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


def test_timing_window_synchronises_only_the_timed_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # a CUDA module without a GPU: the three torch.cuda calls the callback makes are counted instead
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * MIB)
    module = SimpleNamespace(device=torch.device("cuda", 0))
    # 2 warm-up + 3 timed batches of 100, 50, 10, 30, 20 ms, then 4 untimed ones (the clock has no more ticks)
    meter = TrainingCost(warmup_steps=2, timed_steps=3,
                         clock=fake_clock([0.0, 0.1, 1.0, 1.05, 2.0, 2.01, 3.0, 3.03, 4.0, 4.02]))
    syncs_per_batch = []
    for index in range(9):
        before = calls.count("sync")
        meter.on_train_batch_start(None, module, None, index)
        meter.on_train_batch_end(None, module, None, None, index)
        syncs_per_batch.append(calls.count("sync") - before)

    assert syncs_per_batch == [2] * 5 + [0] * 4
    assert [meter.times(i) for i in range(9)] == [True] * 5 + [False] * 4
    assert calls.count("reset") == 9  # memory is followed on every batch: the allocator's statistics need no sync
    assert meter.durations_ms == pytest.approx([100.0, 50.0, 10.0, 30.0, 20.0])
    assert meter.figures() == {"perf/train_step_ms": pytest.approx(20.0), "perf/train_steps_timed": 3,
                               "perf/peak_memory_mb": 3.0, "perf/peak_memory_kind": CUDA_KIND}


def test_timing_off_never_synchronises(monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: syncs.append(device))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 2 * MIB)
    module = SimpleNamespace(device=torch.device("cuda", 0))
    meter = TrainingCost(warmup_steps=3, timed_steps=0, clock=fake_clock([]))  # the clock is never read either
    for index in range(5):
        meter.on_train_batch_start(None, module, None, index)
        meter.on_train_batch_end(None, module, None, None, index)
    assert syncs == [] and meter.durations_ms == []
    assert meter.figures() == {"perf/train_step_ms": None, "perf/train_steps_timed": 0,
                               "perf/peak_memory_mb": 2.0, "perf/peak_memory_kind": CUDA_KIND}


def test_negative_step_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="callbacks.training_cost"):
        TrainingCost(timed_steps=-1)


def test_inference_time_is_a_median_per_image() -> None:
    passes = []
    # one untimed pass, then passes of 40, 10 and 20 ms on 2 images
    clock = fake_clock([0.0, 5.0, 10.0, 10.04, 11.0, 11.01, 12.0, 12.02])
    ms = median_ms_per_image(lambda: passes.append(1), 2, torch.device("cpu"), repeats=3, clock=clock)
    assert ms == pytest.approx(10.0)  # the median pass (20 ms) over 2 images
    assert len(passes) == 4


# image 48x80 in crops of 32 at stride 24: rows start at 0 and 16, columns at 0, 24 and 48
SLIDE = ["model.inference.mode=slide", "model.inference.crop_size=32", "model.inference.stride=24"]
WINDOWS = 2 * 3


def _tiny_seg_task(compose_config: Callable[..., Any], tmp_path: Path, data_root: Path, *overrides: str) -> nn.Module:
    cfg = compose_config("train", ["experiment=ade20k_seg", "model/adapter=lora", *tiny_seg_overrides(data_root),
                                   *overrides], tmp_path)
    return build_datamodule_and_task(cfg)[1]


def _seg_batch() -> dict[str, list[Any]]:
    """Two validation images (resized as the test pipeline does) with their labels at the original size."""
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(3, 48, 80, generator=generator), torch.randn(3, 48, 80, generator=generator)]
    masks = [torch.zeros(60, 100, dtype=torch.long), torch.zeros(30, 50, dtype=torch.long)]
    return {"image": images, "mask": masks, "name": ["a", "b"]}


def _frozen_tensor_copies(tensor: torch.Tensor) -> int:
    """How many live tensors of this process hold `tensor`'s values (1: only itself)."""
    gc.collect()  # models of earlier tests (same seed, same values) wait in reference cycles
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor) and o.shape == tensor.shape
               and o.dtype == tensor.dtype and torch.equal(o, tensor))


@pytest.mark.parametrize("flip", [False, True])
def test_inference_time_runs_the_configured_sliding_window_on_the_task_itself(
        flip: bool, compose_config: Callable[..., Any], tmp_path: Path, seg_data_root: Path) -> None:
    task = _tiny_seg_task(compose_config, tmp_path, seg_data_root, *SLIDE, f"model.inference.flip={flip}").train()
    modes = {name: module.training for name, module in task.named_modules()}
    frozen = task.backbone.vit.patch_embed.proj.weight
    assert not frozen.requires_grad and _frozen_tensor_copies(frozen) == 1
    seen: list[tuple[tuple[int, ...], bool, bool]] = []
    copies: list[int] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        seen.append((tuple(inputs[0].shape), module is task.encoder, module.training))
        if not copies:
            copies.append(_frozen_tensor_copies(frozen))

    task.encoder.register_forward_hook(record)
    inference_ms_per_image(task, _seg_batch(), torch.device("cpu"), nullcontext, repeats=1)

    # 2 passes (1 untimed, 1 timed) x 2 images x (1 or 2 flips): the windows of each, 4 to a forward at most
    per_image = [(4, 3, 32, 32), (WINDOWS - 4, 3, 32, 32)] * (2 if flip else 1)
    assert seen == [(shape, True, False) for shape in per_image * 2 * 2]
    assert copies == [1]  # the frozen ViT is held once while it runs
    assert {name: module.training for name, module in task.named_modules()} == modes


def test_timed_segmentation_outputs_are_validations_own(compose_config: Callable[..., Any], tmp_path: Path,
                                                        seg_data_root: Path) -> None:
    task = _tiny_seg_task(compose_config, tmp_path, seg_data_root, *SLIDE, "model.inference.flip=true").eval()
    batch = _seg_batch()
    with torch.inference_mode():
        inference, num_images = configured_inference(task, batch)
        outputs = inference()
        for image, mask, probs in zip(batch["image"], batch["mask"], outputs):
            expected = tta_inference(task, image.unsqueeze(0), tuple(mask.shape), mode="slide", crop_size=32,
                                     stride=24, flip=True)
            assert probs.shape == (1, task.num_classes, *mask.shape)  # at the label's size, as validation scores
            assert torch.equal(probs, expected)
    assert num_images == 2


def test_detection_inference_time_runs_predict_in_eval_mode(compose_config: Callable[..., Any], tmp_path: Path,
                                                            det_data_root: Path) -> None:
    cfg = compose_config("train", ["experiment=demo_det", *tiny_det_overrides(det_data_root, "mask_rcnn_light")],
                         tmp_path)
    task = build_datamodule_and_task(cfg)[1].train()
    seen: list[tuple[int, bool, bool]] = []
    task.encoder.register_forward_hook(
        lambda module, inputs, output: seen.append((len(inputs[0]), module is task.encoder, task.detector.training)))
    images = [torch.randn(3, 64, 96), torch.randn(3, 96, 64)]
    batch = {"images": images, "scales": [0.5, 0.5], "orig_sizes": [(128, 192), (192, 128)], "image_ids": [1, 2]}
    inference_ms_per_image(task, batch, torch.device("cpu"), nullcontext, repeats=2)
    # torchvision batches the two images into one padded tensor: one encoder forward per pass
    assert seen == [(2, True, False)] * 3
    assert task.training and task.detector.training
    task.eval()
    with torch.inference_mode():
        inference, num_images = configured_inference(task, batch)
        (first, second) = inference()
    assert num_images == 2
    assert first["masks"].shape[1:] == (128, 192) and second["masks"].shape[1:] == (192, 128)  # original pixels


def test_training_run_writes_its_cost(tmp_path: Path, seg_data_root: Path) -> None:
    # 4 steps: 1 warm-up and 2 timed, the 4th neither; validation only at the end
    overrides = [o for o in tiny_seg_overrides(seg_data_root) if not o.startswith(("trainer.max_steps",
                                                                                    "trainer.val_check_interval"))]
    train_in_process(tmp_path, "experiment=demo_seg", *overrides, "trainer.max_steps=4", "trainer.val_check_interval=4",
                     "callbacks.training_cost.warmup_steps=1", "callbacks.training_cost.timed_steps=2")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert all(isinstance(metrics[key], float) for key in PERF_KEYS)
    assert metrics["perf/train_steps_timed"] == 2
    assert metrics["perf/peak_memory_kind"] == ESTIMATE_KIND
    assert metrics["ckpt/size_mb"] == (tmp_path / "checkpoints" / "last.ckpt").stat().st_size / MIB
    # the estimate holds at least the parameters, their gradients and AdamW's two moments
    trainable, frozen = metrics["params/trainable"], metrics["params/total"] - metrics["params/trainable"]
    assert metrics["perf/peak_memory_mb"] * MIB > 4 * (4 * trainable + frozen)
