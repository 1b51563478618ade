"""For every PEFT method and task: every trained tensor gets a gradient, the checkpoint holds exactly the
trained tensors and reloads bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_det_overrides, tiny_seg_overrides
from vitadapter.adapters import import_all_methods
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.utils.params import parameter_counts

METHODS = sorted(import_all_methods())
TASKS = {
    "seg": lambda root: ["experiment=demo_seg", *tiny_seg_overrides(root)],
    "det": lambda root: ["experiment=demo_det", *tiny_det_overrides(root, "mask_rcnn_light")],
}


def _build(compose_config, task: str, method: str, data_root: Path, tmp_path: Path):
    cfg = compose_config("train", [*TASKS[task](data_root), f"model/adapter={method}"], tmp_path)
    return build_datamodule_and_task(cfg)[1]


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
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 8:40, 16:48] = 1
    target = {"boxes": torch.tensor([[16.0, 8.0, 48.0, 40.0]]), "labels": torch.tensor([1]), "masks": masks}
    return task.training_step({"images": list(images), "targets": [target, target]}, 0)


def _outputs(task: torch.nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    task.eval()
    with torch.no_grad():
        return list(task.encoder(image).values()) + [task(image) if hasattr(task, "head") else
                                                     next(iter(task.detector.backbone(image).values()))]


@pytest.mark.parametrize("task_kind", sorted(TASKS))
@pytest.mark.parametrize("method", METHODS)
def test_checkpoint_holds_exactly_the_trained_tensors_and_round_trips(
    method: str, task_kind: str, compose_config, tmp_path: Path, seg_data_root: Path, det_data_root: Path
) -> None:
    data_root = seg_data_root if task_kind == "seg" else det_data_root
    task = _build(compose_config, task_kind, method, data_root, tmp_path)
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

    saved = checkpoint["state_dict"]
    statistics = sum(v.numel() for k, v in saved.items() if k.rsplit(".", 1)[-1] in
                     ("running_mean", "running_var", "num_batches_tracked"))
    assert sum(v.numel() for v in saved.values()) - statistics == parameter_counts(task)["params/trainable"]

    fresh = _build(compose_config, task_kind, method, data_root, tmp_path)
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    fresh.on_load_checkpoint(loaded)
    fresh.load_state_dict(loaded["state_dict"], strict=True)
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(_outputs(task, image), _outputs(fresh, image)))
