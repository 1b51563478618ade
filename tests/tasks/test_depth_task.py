"""The depth task: every depth experiment runs 2 steps on an NYU-layout fixture, eval.py's metrics equal an independent
computation from the PNGs it writes, every depth head trains on every neck it applies to, and batches without a
valid pixel train with loss 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from PIL import Image

from tests.depth_data import TEST_SIZES, tiny_depth_overrides, write_nyu_fixture
from tests.helpers import CONFIGS, EXPERIMENTS, evaluate_in_process, experiment_neck, train_in_process
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.tasks.loss_guard import NonFiniteLossError

DEPTH_EXPERIMENTS = [e for e in EXPERIMENTS if e.startswith(("nyu_depth", "demo_depth"))]
PYRAMID_NECKS = sorted(p.stem for p in (CONFIGS / "model" / "neck").glob("*.yaml") if p.stem != "tokens")
MIN_DEPTH, MAX_DEPTH = 1e-3, 10.0
EIGEN = (slice(45, 471), slice(41, 601))


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nyu_fixture(tmp_path_factory.mktemp("nyu"))


def _experiment_overrides(experiment: str, root: Path, *extra: str) -> list[str]:
    data = [] if experiment.startswith("nyu") else ["data.synthetic={num_train:4,num_val:2,height:40,width:56,seed:0}"]
    head = ["model.head.channels=16"] if experiment_neck(experiment) != "tokens" else []
    return [f"experiment={experiment}", *tiny_depth_overrides(root, experiment_neck(experiment)), *head, *data, *extra]


def reference_metrics(pairs: list[tuple[np.ndarray, np.ndarray]], eigen_crop: bool) -> dict[str, float]:
    """The NYU metrics written out with numpy: per image over min < gt < max (inside the Eigen crop), prediction
    clipped to the range, then the mean over the images that have a valid pixel."""
    per_image = []
    for pred, gt in pairs:
        valid = (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
        if eigen_crop:
            crop = np.zeros_like(valid)
            crop[EIGEN] = True
            valid &= crop
        if not valid.any():
            continue
        p, g = np.clip(pred[valid], MIN_DEPTH, MAX_DEPTH).astype(np.float64), gt[valid].astype(np.float64)
        ratio = np.maximum(p / g, g / p)
        log_error = np.log(p) - np.log(g)
        per_image.append({
            "AbsRel": np.mean(np.abs(g - p) / g), "SqRel": np.mean((g - p) ** 2 / g),
            "RMSE": np.sqrt(np.mean((g - p) ** 2)), "RMSElog": np.sqrt(np.mean(log_error ** 2)),
            "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
            "delta1": np.mean(ratio < 1.25), "delta2": np.mean(ratio < 1.25 ** 2), "delta3": np.mean(ratio < 1.25 ** 3),
        })
    return {key: float(np.mean([m[key] for m in per_image])) for key in per_image[0]}


@pytest.mark.parametrize("experiment", DEPTH_EXPERIMENTS)
def test_two_step_run_of_every_depth_experiment_equals_its_evaluation(experiment: str, tmp_path: Path,
                                                                      nyu_root: Path) -> None:
    root = nyu_root if experiment.startswith("nyu") else tmp_path / "synthetic"
    train_in_process(tmp_path / "run", *_experiment_overrides(experiment, root, "data.eval_crop=null"))
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    evaluated = evaluate_in_process(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "eval")
    keys = [k for k in trained if k.startswith("val/")]
    assert {"val/AbsRel", "val/RMSE", "val/delta1"} <= set(keys)
    assert {k: evaluated[k] for k in keys} == {k: trained[k] for k in keys}
    assert np.isfinite(trained["val/AbsRel"]) and trained["val/AbsRel"] > 0


def test_eval_metrics_equal_a_recomputation_from_the_written_predictions(tmp_path: Path) -> None:
    root = write_nyu_fixture(tmp_path / "nyu")
    # only NYU's own 480 x 640 maps in the test split, scored inside the Eigen crop
    for path in sorted((root / "images" / "test").glob("*.jpg"))[1:]:
        path.unlink()
        (root / "annotations" / "test" / f"{path.stem}.png").unlink()
    train_in_process(tmp_path / "run", *_experiment_overrides("nyu_depth_linear", root))
    metrics = evaluate_in_process(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "eval",
                                  "eval.save_predictions=true", "model.inference.flip=true")
    pairs = []
    for gt_path in sorted((root / "annotations" / "test").glob("*.png")):
        written = np.array(Image.open(tmp_path / "eval" / "predictions" / gt_path.name))
        assert written.dtype == np.uint16 and written.shape == TEST_SIZES[0] and written.min() >= 1
        pairs.append((written / 1000.0, np.array(Image.open(gt_path)) / 1000.0))
    expected = reference_metrics(pairs, eigen_crop=True)
    # the PNGs hold millimetres: each depth is rounded by at most 0.5 mm
    assert {k: metrics[f"val/{k}"] for k in expected} == pytest.approx(expected, abs=2e-3)
    assert metrics["val/num_images"] == 1


def _trained_tensors(task) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in task.named_parameters() if p.requires_grad}


def _two_steps(compose_config, tmp_path: Path, root: Path, neck: str, *overrides: str):
    # the experiment whose neck is of the kind asked for (nyu_depth_linear sets the tokens neck's own keys)
    experiment = "nyu_depth_linear" if neck == "tokens" else "nyu_depth_dpt"
    cfg = compose_config("train", [f"experiment={experiment}", *tiny_depth_overrides(root, neck), *overrides], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    before, frozen = _trained_tensors(task), dict(task.backbone.vit.state_dict())
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    task.train()
    losses = []
    for step in range(2):
        optimizer.zero_grad()
        loss = task.training_step(batch, step)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return task, batch, before, frozen, losses


HEAD_NECKS = ([("linear_depth", neck) for neck in ["tokens", *PYRAMID_NECKS]]
              + [("dpt", neck) for neck in PYRAMID_NECKS])


@pytest.mark.parametrize(("head", "neck"), HEAD_NECKS)
def test_depth_heads_train_two_steps_on_every_neck(head: str, neck: str, compose_config, tmp_path: Path,
                                                   nyu_root: Path) -> None:
    # the linear head reads the finest level unless told otherwise: on a pyramid, every level (mmseg's resize_concat)
    head_settings = (["model.head.channels=16"] if head == "dpt" else
                     [] if neck == "tokens" else ["model.head.in_keys=[s4,s8,s16,s32]"])
    task, batch, before, frozen, losses = _two_steps(compose_config, tmp_path, nyu_root, neck, f"model/head={head}",
                                                     *head_settings)
    assert all(np.isfinite(losses)) and losses[0] > 0
    after = _trained_tensors(task)
    assert [n for n in before if n.startswith("head.") and torch.equal(before[n], after[n])] == []
    # ViT-Adapter's injectors start at zero (gamma): their inner tensors get a gradient from the second step on
    neck = [n for n in before if n.startswith("encoder.neck.")]
    assert not neck or any(not torch.equal(before[n], after[n]) for n in neck)
    assert all(torch.equal(frozen[k], v) for k, v in task.backbone.vit.state_dict().items())
    depth = task.eval()(batch["image"])
    assert depth.shape[:2] == (2, 1) and bool((depth >= MIN_DEPTH).all())


def test_dpt_on_the_tapped_tokens_is_refused_with_the_levels_it_needs(compose_config, tmp_path, nyu_root) -> None:
    cfg = compose_config("train", ["experiment=nyu_depth_linear", *tiny_depth_overrides(nyu_root, "tokens"),
                                   "model/head=dpt"], tmp_path)
    with pytest.raises((KeyError, ValueError), match="s4"):
        build_datamodule_and_task(cfg)[1](torch.randn(1, 3, 32, 48))


def test_batch_without_valid_depth_has_loss_zero_and_zero_gradient(compose_config, tmp_path, nyu_root) -> None:
    cfg = compose_config("train", ["experiment=nyu_depth_dpt", *tiny_depth_overrides(nyu_root, "multilevel"),
                                   "model.head.channels=16", "model.loss.gradient_weight=0.5"], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    batch = {**batch, "depth": torch.zeros_like(batch["depth"])}
    loss = task.train().training_step(batch, 0)
    assert loss.item() == 0.0
    loss.backward()
    trainable = {name: p for name, p in task.named_parameters() if p.requires_grad}
    assert [n for n, p in trainable.items() if p.grad is None or p.grad.count_nonzero()] == []


def test_non_finite_depth_prediction_still_stops_training(compose_config, tmp_path, nyu_root) -> None:
    cfg = compose_config("train", ["experiment=nyu_depth_linear", *tiny_depth_overrides(nyu_root, "tokens")], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    with torch.no_grad():
        next(p for p in task.head.parameters() if p.requires_grad).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError):
        task.train().training_step({**batch, "depth": torch.zeros_like(batch["depth"])}, 0)


def test_rescaling_test_time_augmentation_is_refused(compose_config, tmp_path, nyu_root) -> None:
    cfg = compose_config("train", ["experiment=nyu_depth_linear", *tiny_depth_overrides(nyu_root, "tokens"),
                                   "model.inference.scales=[0.5,1.0]"], tmp_path)
    with pytest.raises(InstantiationException, match="a rescaled image looks nearer or farther"):
        build_datamodule_and_task(cfg)
