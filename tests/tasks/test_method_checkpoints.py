"""For every PEFT method, every neck and each task (segmentation, detection, panoptic with Mask2Former): every trained
tensor gets a gradient, the checkpoint holds exactly the trained tensors and reloads bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import CONFIGS, tiny_det_overrides, tiny_mask_classification_overrides, tiny_seg_overrides
from vitadapter.adapters import import_all_methods
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.utils.params import parameter_counts

METHODS = sorted(import_all_methods())
# the tapped tokens (no spatial module, nothing to train) feed the linear probe only: its own test below
NECKS = sorted(path.stem for path in (CONFIGS / "model" / "neck").glob("*.yaml") if path.stem != "tokens")
# every method on the experiments' own neck, every neck with no method, and ViT-Adapter around LoRA
CASES = [(method, None) for method in METHODS] + [("none", neck) for neck in NECKS] + [("lora", "vit_adapter")]
TASKS = {
    "seg": lambda root, neck: ["experiment=demo_seg", *tiny_seg_overrides(root, neck)],
    "det": lambda root, neck: ["experiment=demo_det", *tiny_det_overrides(root, "mask_rcnn_light", neck)],
    "pan": lambda root, neck: ["experiment=demo_panoptic", *tiny_mask_classification_overrides(root, neck)],
}


def _build(compose_config, task: str, method: str, neck: str | None, data_root: Path, tmp_path: Path,
           extra: tuple[str, ...] = ()):
    cfg = compose_config("train", [*TASKS[task](data_root, neck), f"model/adapter={method}", *extra], tmp_path)
    return build_datamodule_and_task(cfg)[1]


def _method_overrides(method: str, request: pytest.FixtureRequest) -> tuple[str, ...]:
    """AdapterFusion needs sources: the adapters of the 2-step demo_seg and demo_det runs (same frozen ViT)."""
    if method != "fusion":
        return ()
    runs = [request.getfixturevalue(name) / "checkpoints" / "last.ckpt" for name in ("seg_demo_run", "det_demo_run")]
    return (f"model.adapter.sources=[{','.join(repr(str(run)) for run in runs)}]",)


def _perturb_trainable(task: torch.nn.Module) -> None:
    """Stands in for training: every trainable tensor moves away from its initial (often zero) value."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in task.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


def _training_loss(task: torch.nn.Module, task_kind: str) -> torch.Tensor:
    """The task's own training loss on a small random batch (outside a Trainer)."""
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 64, 64, generator=generator)
    if task_kind == "seg":
        return task.training_step({"image": images, "mask": torch.randint(0, 8, (2, 64, 64), generator=generator)}, 0)
    if task_kind == "pan":
        segments = torch.zeros(2, 64, 64, dtype=torch.bool)
        segments[0, :32], segments[1, 40:, 8:40] = True, True  # stuff above, a thing below; the rest void
        return task.training_step({"image": list(images), "masks": [segments, segments],
                                   "labels": [torch.tensor([5, 1])] * 2, "iscrowd": [torch.tensor([False, False])] * 2}, 0)
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 8:40, 16:48] = 1
    target = {"boxes": torch.tensor([[16.0, 8.0, 48.0, 40.0]]), "labels": torch.tensor([1]), "masks": masks}
    return task.training_step({"images": list(images), "targets": [target, target]}, 0)


def _outputs(task: torch.nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    task.eval()
    with torch.no_grad():
        if not hasattr(task, "head"):
            return list(task.encoder(image).values()) + [next(iter(task.detector.backbone(image).values()))]
        head = task(image)  # a Mask2Former task: every layer's class and mask logits
        return list(task.encoder(image).values()) + (
            [head] if isinstance(head, torch.Tensor) else [*head.class_logits, *head.mask_logits])


# the panoptic task's encoder is the others' (and its head runs on every neck in tests/heads): every method on its own
PARAMS = [(method, neck, task) for method, neck in CASES for task in sorted(TASKS) if task != "pan" or neck is None]


@pytest.mark.parametrize(("method", "neck", "task_kind"), PARAMS,
                         ids=[f"{m}-{n or 'own_neck'}-{t}" for m, n, t in PARAMS])
def test_checkpoint_holds_exactly_the_trained_tensors_and_round_trips(
    method: str, neck: str | None, task_kind: str, compose_config, tmp_path: Path, seg_data_root: Path,
    det_data_root: Path, panoptic_data_root: Path, request: pytest.FixtureRequest
) -> None:
    data_root = {"seg": seg_data_root, "det": det_data_root, "pan": panoptic_data_root}[task_kind]
    extra = _method_overrides(method, request)
    task = _build(compose_config, task_kind, method, neck, data_root, tmp_path, extra)
    _perturb_trainable(task)
    # every tensor that trains reaches the loss (DDP runs with find_unused_parameters=false); no frozen one does
    task.train()
    _training_loss(task, task_kind).backward()
    assert [n for n, p in task.named_parameters() if p.requires_grad and p.grad is None] == []
    assert all(p.grad is None for p in task.parameters() if not p.requires_grad)
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    path = tmp_path / "method.ckpt"
    torch.save(checkpoint, path)

    saved = {k: v for k, v in checkpoint["state_dict"].items()
             if k.rsplit(".", 1)[-1] not in ("running_mean", "running_var", "num_batches_tracked")}
    counts = parameter_counts(task)
    assert sum(v.numel() for v in saved.values()) == counts["params/trainable"]

    def saved_in(*parts: str) -> int:
        return sum(v.numel() for k, v in saved.items() if any(f"encoder.{part}." in f".{k}" for part in parts))

    assert saved_in("backbone", "hooks") == counts["params/trainable_adapter"]
    assert saved_in("neck") == counts["params/trainable_neck"] > 0
    assert counts["params/trainable_head"] == counts["params/trainable"] - saved_in("backbone", "hooks", "neck") > 0
    if method == "none":
        assert not any(".encoder.backbone." in f".{k}" for k in checkpoint["state_dict"])

    fresh = _build(compose_config, task_kind, method, neck, data_root, tmp_path, extra)
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    fresh.on_load_checkpoint(loaded)
    fresh.load_state_dict(loaded["state_dict"], strict=True)
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(_outputs(task, image), _outputs(fresh, image)))


@pytest.mark.parametrize("method", ["none", "lora"])
def test_linear_probe_checkpoint_holds_the_head_and_method_only(method: str, compose_config, tmp_path: Path,
                                                                seg_data_root: Path) -> None:
    def build():
        overrides = ["experiment=ade20k_seg_linear", *tiny_seg_overrides(seg_data_root, "tokens"),
                     f"model/adapter={method}"]
        return build_datamodule_and_task(compose_config("train", overrides, tmp_path))[1]

    task = build()
    _perturb_trainable(task)
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    counts = parameter_counts(task)
    assert counts["params/trainable_neck"] == 0
    assert {k.split(".")[0] for k in checkpoint["state_dict"]} == ({"head"} if method == "none" else {"head", "encoder"})
    fresh = build()
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    image = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(1))
    task.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(task(image), fresh(image)) and task(image).shape == (2, 8, 4, 3)
