"""Semantic segmentation with the Mask2Former head through SegmentationTask: 2-step runs of both experiments whose
eval.py PNGs score the logged mIoU, TTA and sliding windows averaging its scores, checkpoints holding only what
trains, a frozen ViT untouched, unlabelled batches, NaN, the auxiliary head refused, serving beside another task."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.helpers import dataset_miou, evaluate_in_process, tiny_seg_overrides, train_in_process
from vitadapter.inference import tta_inference
from vitadapter.inference.predictors import task_predictor
from vitadapter.multitask import MultiTaskModel
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.run.predict import read_rgb
from vitadapter.run.trained import load_trained
from vitadapter.tasks.loss_guard import NonFiniteLossError

# ade20k_seg_m2f: ViT-Adapter neck and the paper's head sizes but its width (16), 12544 points on 16×16 masks
EXPERIMENTS = {"demo_seg_m2f": None, "ade20k_seg_m2f": "vit_adapter"}
VAL_KEYS = ("val/mIoU", "val/aAcc", "val/mAcc")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, seg_data_root: Path) -> dict[str, Path]:
    """A 2-step train.py run of each Mask2Former experiment on the tiny synthetic set; their run directories."""
    folders = {}
    for experiment, neck in EXPERIMENTS.items():
        folders[experiment] = tmp_path_factory.mktemp(experiment)
        train_in_process(folders[experiment], f"experiment={experiment}", *tiny_seg_overrides(seg_data_root, neck))
    return folders


def _written_pairs(predictions: Path, datamodule) -> list[tuple[np.ndarray, np.ndarray]]:
    """(written prediction as class indices, label) for every validation image (ADE20K files: class index + 1)."""
    pairs = []
    for index in range(len(datamodule.val_set)):
        sample = datamodule.val_set[index]
        written = np.asarray(Image.open(predictions / f"{sample['name']}.png")).astype(np.int64) - 1
        pairs.append((written, np.asarray(sample["mask"])))
    return pairs


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_eval_pngs_score_the_logged_miou(experiment: str, runs: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = runs[experiment] / "checkpoints" / "last.ckpt"
    evaluated = evaluate_in_process(checkpoint, tmp_path, "eval.save_predictions=true")
    trained = json.loads((runs[experiment] / "metrics.json").read_text())
    assert {k: evaluated[k] for k in VAL_KEYS} == {k: trained[k] for k in VAL_KEYS}
    datamodule, task = load_trained(checkpoint)
    datamodule.setup("validate")
    assert evaluated["val/mIoU"] == pytest.approx(
        dataset_miou(_written_pairs(tmp_path / "predictions", datamodule), task.num_classes), abs=1e-4)


def test_tta_and_sliding_windows_average_scores_without_softmax(runs: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = runs["demo_seg_m2f"] / "checkpoints" / "last.ckpt"
    overrides = ["eval.tta.flip=true", "eval.tta.scales=[0.75,1.0]", "model.inference.mode=slide",
                 "model.inference.crop_size=48", "model.inference.stride=32", "trainer.precision=32-true",
                 "eval.save_predictions=true"]
    evaluated = evaluate_in_process(checkpoint, tmp_path, *overrides)
    datamodule, task = load_trained(checkpoint)
    datamodule.setup("validate")
    pairs = _written_pairs(tmp_path / "predictions", datamodule)
    with torch.no_grad():
        for index, (written, label) in enumerate(pairs):
            image = datamodule.val_set[index]["image"][None]
            scores = tta_inference(task, image, label.shape, mode="slide", crop_size=48, stride=32,
                                   scales=(0.75, 1.0), flip=True, softmax=False)
            assert np.array_equal(written, scores.argmax(1)[0].numpy())
    assert evaluated["val/mIoU"] == pytest.approx(dataset_miou(pairs, task.num_classes), abs=1e-4)


def test_checkpoint_holds_only_trained_tensors(runs: dict[str, Path]) -> None:
    for experiment in EXPERIMENTS:
        checkpoint = runs[experiment] / "checkpoints" / "last.ckpt"
        keys = set(torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"])
        _, task = load_trained(checkpoint)
        trained = {name for name, param in task.named_parameters() if param.requires_grad}
        assert trained <= keys and not keys & set(task.frozen_state_keys())
        # the whole head: its parameters and its BatchNorm statistics (demo_seg_m2f's pixel decoder)
        assert {k for k in keys if k.startswith("head.")} == {f"head.{k}" for k in task.head.state_dict()}


def test_training_leaves_the_frozen_vit_bit_identical(compose_config, tmp_path: Path, seg_data_root: Path) -> None:
    cfg = compose_config("train", ["experiment=demo_seg_m2f", *tiny_seg_overrides(seg_data_root)], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    frozen = task.frozen_state_keys()
    before = {k: v.clone() for k, v in task.state_dict().items() if k in frozen}
    head_before = {n: p.detach().clone() for n, p in task.head.named_parameters()}
    L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              limit_val_batches=0, default_root_dir=tmp_path).fit(task, datamodule=datamodule)
    after = task.state_dict()
    assert before and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(p, head_before[n]) for n, p in task.head.named_parameters())


@pytest.fixture
def tiny_task(compose_config, tmp_path: Path, seg_data_root: Path):
    cfg = compose_config("train", ["experiment=demo_seg_m2f", *tiny_seg_overrides(seg_data_root)], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    datamodule.prepare_data()  # writes the synthetic set on first use
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader())), task.train()


def test_batch_without_labelled_pixel_trains_nothing(tiny_task) -> None:
    batch, task = tiny_task
    loss = task.training_step({**batch, "mask": torch.full_like(batch["mask"], 255)}, 0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    trainable = {name: p for name, p in task.named_parameters() if p.requires_grad}
    # every trainable tensor is reached (DDP with find_unused_parameters=false), with a gradient of exactly 0
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert [n for n, p in trainable.items() if p.grad.count_nonzero()] == []


@pytest.mark.parametrize("labelled", [False, True], ids=["unlabelled", "labelled"])
def test_non_finite_predictions_still_stop_training(tiny_task, labelled: bool) -> None:
    batch, task = tiny_task
    batch = {**batch, "mask": batch["mask"] if labelled else torch.full_like(batch["mask"], 255)}
    batch["image"] = batch["image"].clone()
    batch["image"][0, :, :4, :4] = float("nan")
    with pytest.raises(NonFiniteLossError, match="training loss is nan"):
        task.training_step(batch, 0)


def test_an_auxiliary_head_adds_its_weighted_cross_entropy(compose_config, tmp_path: Path,
                                                           seg_data_root: Path) -> None:
    cfg = compose_config("train", ["experiment=demo_seg_m2f", *tiny_seg_overrides(seg_data_root), "model/aux_head=fcn",
                                   "model.aux_head.channels=16", "model.aux_weight=3.0"], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    loss = task.train().training_step(batch, 0)
    pyramid = task.encoder(batch["image"])
    torch.manual_seed(0)
    own = task.head.segmentation_loss(pyramid, batch["mask"], 255)["loss"]
    aux = F.cross_entropy(F.interpolate(task.aux_head(pyramid), size=batch["mask"].shape[-2:], mode="bilinear"),
                          batch["mask"], ignore_index=255)
    assert loss.item() == pytest.approx(own.item() + 3.0 * aux.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.count_nonzero() for p in task.aux_head.parameters())


def test_figures_before_any_validation_are_refused(tiny_task) -> None:
    _, task = tiny_task
    for read in (task.summary_metrics, task.results_table):
        with pytest.raises(RuntimeError, match="no validation has run yet"):
            read()


def test_onnx_export_is_refused_naming_the_head(tiny_task) -> None:
    from vitadapter.export.onnx_export import prepare_segmentation

    _, task = tiny_task
    with pytest.raises(ValueError, match="model.head Mask2FormerHead: ONNX export .* eval.py / predict.py"):
        prepare_segmentation(task.eval())


def test_served_beside_another_task_as_alone(runs: dict[str, Path], compose_config, tmp_path: Path,
                                             seg_data_root: Path) -> None:
    checkpoint = runs["demo_seg_m2f"] / "checkpoints" / "last.ckpt"
    model = MultiTaskModel.from_checkpoints([checkpoint])
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root)], tmp_path)
    _, fpn = build_datamodule_and_task(cfg)
    model.add_task(fpn.eval(), "fpn")
    datamodule, alone = load_trained(checkpoint)
    rgb = read_rgb(sorted((seg_data_root / "images" / "validation").glob("*.jpg"))[0])
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = task_predictor(alone.eval(), datamodule, torch.device("cpu"))(rgb)
        assert torch.equal(model(image, task="demo_seg_m2f"), alone(image))
        assert torch.equal(model(image, task="fpn"), fpn(image))
    served = model.predict(rgb, task="demo_seg_m2f")
    assert served.shape == rgb.shape[:2] and torch.equal(served, expected)
