"""A training batch with no labelled pixel: loss exactly 0 with zero gradient, for every method and neck; batches
with labels keep cross-entropy's mean; a non-finite logit still stops the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tests.helpers import CONFIGS, tiny_seg_overrides
from tests.unlabelled_data import write_sparse_ade20k
from vitadapter.adapters import import_all_methods
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.tasks.loss_guard import NonFiniteLossError

METHODS = sorted(import_all_methods())
NECKS = sorted(path.stem for path in (CONFIGS / "model" / "neck").glob("*.yaml"))
IGNORE = 255


@pytest.fixture(scope="module")
def sparse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ADE20K-layout set whose labels are 0 ("other") almost everywhere (tests/unlabelled_data.py)."""
    return write_sparse_ade20k(tmp_path_factory.mktemp("sparse_ade20k"))


def _build(compose_config, root: Path, tmp_path: Path, *extra: str, neck: str | None = None):
    # ade20k_seg: UPerNet + auxiliary FCN head, mmseg's crop with cat_max_ratio; 64 px crops of 40-96 px images
    overrides = ["experiment=ade20k_seg", *tiny_seg_overrides(root, neck, synthetic=False), *extra]
    return build_datamodule_and_task(compose_config("train", overrides, tmp_path))


def _unlabelled_batch(datamodule) -> dict[str, Any]:
    """Two real training samples of the fixture whose masks are then set entirely to the ignore value."""
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    return {**batch, "mask": torch.full_like(batch["mask"], IGNORE)}


def test_labelled_loss_is_cross_entropys_mean_value_and_gradient(compose_config, tmp_path, sparse_root) -> None:
    _, task = _build(compose_config, sparse_root, tmp_path)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 150, 16, 16, generator=generator)
    mask = torch.randint(0, 150, (2, 64, 64), generator=generator)
    mask[torch.rand(mask.shape, generator=generator) < 0.8] = IGNORE
    ours, reference = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = task._loss(ours, mask)
    expected = F.cross_entropy(F.interpolate(reference, size=(64, 64), mode="bilinear", align_corners=False), mask,
                               ignore_index=IGNORE)
    loss.backward()
    expected.backward()
    assert torch.equal(loss, expected) and torch.equal(ours.grad, reference.grad)


@pytest.mark.parametrize("aux_weight", [0.4, 3.0])
def test_batch_without_labelled_pixel_has_loss_zero_and_zero_gradient(compose_config, tmp_path, sparse_root,
                                                                      aux_weight: float) -> None:
    datamodule, task = _build(compose_config, sparse_root, tmp_path, f"model.aux_weight={aux_weight}")
    assert task.aux_head is not None
    loss = task.train().training_step(_unlabelled_batch(datamodule), 0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    trainable = {name: p for name, p in task.named_parameters() if p.requires_grad}
    # every trainable tensor is reached (DDP with find_unused_parameters=false), with a gradient of exactly 0
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert [n for n, p in trainable.items() if p.grad.count_nonzero()] == []


@pytest.mark.parametrize("labelled", [False, True], ids=["unlabelled", "labelled"])
def test_non_finite_logits_still_stop_training(compose_config, tmp_path, sparse_root, labelled: bool) -> None:
    datamodule, task = _build(compose_config, sparse_root, tmp_path)
    batch = _unlabelled_batch(datamodule)
    if labelled:
        batch["mask"][:, :8] = 1
    batch["image"][0, :, :4, :4] = float("nan")
    with pytest.raises(NonFiniteLossError, match="training loss is nan"):
        task.train().training_step(batch, 0)


class _LossPerBatch(L.Callback):
    """Records (whether the batch had a labelled pixel, its training loss) for every step."""

    def __init__(self) -> None:
        self.steps: list[tuple[bool, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.steps.append((bool((batch["mask"] != IGNORE).any()), float(loss)))


@pytest.fixture(scope="module")
def fusion_sources(sparse_root: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """AdapterFusion needs source checkpoints: two residual-adapter tasks on the same frozen ViT, saved as
    train.py saves them (trainable tensors + the backbone's fingerprint and the run config); the override."""
    folder = tmp_path_factory.mktemp("fusion_sources")
    paths = []
    for method in ("bottleneck", "convpass"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("train", ["experiment=ade20k_seg", *tiny_seg_overrides(sparse_root, synthetic=False),
                                    f"model/adapter={method}", f"paths.output_dir={folder}"])
        _, source = build_datamodule_and_task(cfg)
        checkpoint = {"state_dict": source.state_dict()}
        source.on_save_checkpoint(checkpoint)
        paths.append(folder / f"{method}.ckpt")
        torch.save(checkpoint, paths[-1])
    return f"model.adapter.sources=[{','.join(repr(str(p)) for p in paths)}]"


@pytest.mark.parametrize("neck", NECKS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_and_neck_trains_through_unlabelled_batches(compose_config, tmp_path, sparse_root, method: str,
                                                                 neck: str, request: pytest.FixtureRequest) -> None:
    extra = [f"model/adapter={method}"]
    if method == "fusion":
        extra.append(request.getfixturevalue("fusion_sources"))
    datamodule, task = _build(compose_config, sparse_root, tmp_path, *extra, neck=neck)
    before = {n: p.detach().clone() for n, p in task.named_parameters() if p.requires_grad}
    record = _LossPerBatch()
    # 6 training images, 2 of them labelled, batches of 2: the 3 steps of an epoch meet at least one batch of two
    # unlabelled images, whatever the shuffle
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[record], default_root_dir=tmp_path)
    trainer.fit(task, datamodule=datamodule)
    assert len(record.steps) == 3
    unlabelled = [loss for has_label, loss in record.steps if not has_label]
    assert unlabelled and all(loss == 0.0 for loss in unlabelled)
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in record.steps)
    after = dict(task.named_parameters())
    assert all(torch.isfinite(after[n]).all() for n in before)
    assert any(not torch.equal(after[n], p) for n, p in before.items())  # the labelled batches trained
