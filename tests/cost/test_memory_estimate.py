"""The memory estimate's parts against exact counts on a real tiny task, and its dry run on a giant trunk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers import compose_at, tiny_det_overrides, tiny_seg_overrides
from vitadapter.cost import SavedTensorCounter
from vitadapter.cost.dry_run import dry_run_step, forward_context
from vitadapter.cost.memory_estimate import CPU_BASELINE_BYTES, estimate_training_memory
from vitadapter.cost.step_memory import configured_optimizer, tensor_bytes
from vitadapter.run.build import build_datamodule_and_task

# DINOv3's side network: extractor-only ViT-Adapter (checkpointed) on a bfloat16 frozen trunk, UPerNet + FCN
CASES = {"demo_seg": ("demo_seg", None), "dinov3_side": ("ade20k_seg_dinov3", "vit_adapter")}


def _config(tmp_path: Path, case: str, *extra: str) -> DictConfig:
    experiment, neck = CASES[case]
    overrides = [f"experiment={experiment}", *tiny_seg_overrides(tmp_path / "data", neck), *extra]
    return compose_at("train", overrides, tmp_path)


def _real_task(cfg: DictConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_datamodule_and_task(cfg)[1].train()


@pytest.mark.parametrize("case", CASES)
def test_weights_and_optimizer_state_are_exact(tmp_path: Path, case: str) -> None:
    cfg = _config(tmp_path, case, "model.backbone.frozen_dtype=bfloat16")
    estimate = estimate_training_memory(cfg)
    task = _real_task(cfg)
    params = list(task.parameters())
    trained = [p for p in params if p.requires_grad]
    assert estimate.trained_weights == estimate.gradients == tensor_bytes(trained) > 0
    assert estimate.frozen_weights == tensor_bytes(p for p in params if not p.requires_grad) + tensor_bytes(
        task.buffers())
    optimizer = configured_optimizer(task)  # AdamW: two float32 moments per tensor and a one-element step count
    for param in trained:
        param.grad = torch.zeros_like(param)
    optimizer.step()
    state = [t for s in optimizer.state.values() for t in s.values()]
    assert estimate.optimizer_state == tensor_bytes(state) == 2 * tensor_bytes(trained) + 4 * len(trained)
    assert estimate.baseline == CPU_BASELINE_BYTES and estimate.device == "cpu"
    assert estimate.total == sum(getattr(estimate, part) for part in estimate.PARTS)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("case", CASES)
def test_activations_match_a_real_training_step(tmp_path: Path, case: str, precision: str) -> None:
    cfg = _config(tmp_path, case, f"trainer.precision={precision}")
    estimate = estimate_training_memory(cfg)
    task = _real_task(cfg)
    batch = {"image": torch.randn(2, 3, 64, 64), "mask": torch.randint(0, task.num_classes, (2, 64, 64))}
    counter = SavedTensorCounter({p.untyped_storage().data_ptr() for p in task.parameters()})
    counter.start()
    with forward_context(cfg, torch.device("cpu")), dry_run_step(task):
        task.training_step(batch, 0)
    counter.stop()
    # exact in float32; under autocast a few KB of casts differ
    assert estimate.activations == pytest.approx(counter.total_bytes, rel=0.01)


def test_a_7b_trunk_is_estimated_on_the_meta_device(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "dinov3_side", "model.backbone.name=vit_7b_patch16_dinov3",
                  "model.backbone.frozen_dtype=bfloat16", "data.crop_size=224", "data.batch_size=1",
                  # one image: GroupNorm, 32 groups of 2 channels, on UPerNet's 1x1 pooled map
                  "model.head.norm=gn", "model.head.channels=64")
    estimate = estimate_training_memory(cfg)
    # 6,716,030,976 parameters: the matrices in bfloat16, 3.9M vector elements (biases, norms, LayerScale) in float32
    assert 2 * 6_716_030_976 < estimate.frozen_weights < 2 * 6_716_030_976 + 2 * 4_000_000
    assert estimate.optimizer_state > 2 * estimate.trained_weights > 0 and estimate.activations > 0


def test_a_step_that_cannot_run_is_reported_before_the_run(tmp_path: Path) -> None:
    # UPerNet's BatchNorm on its 1x1 pooled map cannot train on one image: the real run would fail at its first step
    cfg = _config(tmp_path, "dinov3_side", "data.batch_size=1", "model.head.norm=bn")
    with pytest.raises(RuntimeError, match="training step of this config fails.*per channel"):
        estimate_training_memory(cfg)


def test_a_detector_is_refused_by_name(tmp_path: Path) -> None:
    cfg = compose_at("train", ["experiment=demo_det", *tiny_det_overrides(tmp_path / "data", "mask_rcnn_light")],
                     tmp_path)
    with pytest.raises(NotImplementedError, match="DetectionTask: the memory estimate covers dense tasks"):
        estimate_training_memory(cfg)


def test_a_loss_that_reads_values_is_refused_with_what_to_measure_instead(tmp_path: Path) -> None:
    # Mask2Former matches queries to masks by their values, which fake tensors do not have
    cfg = compose_at("train", ["experiment=demo_seg_m2f", *tiny_seg_overrides(tmp_path / "data")], tmp_path)
    with pytest.raises(NotImplementedError, match="loss depends on them.*perf/peak_memory_mb"):
        estimate_training_memory(cfg)


def test_a_gpu_run_is_estimated_as_the_allocator_s_peak(tmp_path: Path) -> None:
    cpu = estimate_training_memory(_config(tmp_path, "dinov3_side", "trainer.precision=bf16-mixed"))
    gpu = estimate_training_memory(_config(tmp_path, "dinov3_side", "trainer=gpu", "trainer.precision=bf16-mixed"))
    assert (gpu.device, gpu.baseline, cpu.device) == ("cuda", 0, "cpu")
    if not torch.cuda.is_available():  # simulated with the CPU's autocast: the same dtypes, the same bytes
        assert gpu.total == cpu.total - cpu.baseline
