"""Panoptic segmentation with Mask2Former (PanopticTask): 2-step runs of both experiments whose eval.py reproduces the
logged PQ and whose written COCO panoptic files score it again, predict.py drawing what validation wrote, masks mapped
back to original pixels, crowd/void/padding left out of training, all-void crops, NaN, what trains and checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.datasets.panoptic_layouts import quirky_images, write_panoptic_fixture
from tests.helpers import (evaluate_in_process, last_logged, predict_in_process, tiny_mask_classification_overrides,
                           tiny_seg_overrides, train_in_process)
from vitadapter.data.coco_panoptic_format import load_panoptic_annotations, read_panoptic_png
from vitadapter.heads.mask2former import MaskTargets
from vitadapter.inference.predictors import task_predictor
from vitadapter.inference.visualize import draw_panoptic
from vitadapter.metrics import evaluate_panoptic_files
from vitadapter.multitask import MultiTaskModel
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.run.trained import load_trained
from vitadapter.tasks import PanopticTask
from vitadapter.tasks.loss_guard import NonFiniteLossError
from vitadapter.tasks.mask_classification import fit_targets, masks_to_original
from vitadapter.tasks.panoptic import panoptic_targets

PQ_KEYS = [f"val/{m}{kind}" for kind in ("", "_th", "_st") for m in ("PQ", "SQ", "RQ")]
# 2-step models are far from Mask2Former's confident, non-overlapping queries: every query that names a class and wins
# a pixel of its mask becomes a segment, so that the predictions written and scored hold segments
EVERY_QUERY = ["model.object_mask_threshold=0.0", "model.overlap_threshold=0.0"]


def _naming_classes(checkpoint: Path, out: Path) -> Path:
    """A copy of `checkpoint` whose queries never say "no object" (a 2-step model's queries may all say it)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["state_dict"]["head.class_predictor.bias"][-1] = -10.0
    torch.save(state, out)
    return out


@pytest.fixture(scope="module")
def quirky_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made COCO panoptic split (odd size, grayscale, an image with only stuff, one without any segment,
    a crowd, ids over 256^2) as both the training and the validation split."""
    root = tmp_path_factory.mktemp("quirky_panoptic")
    for split in ("train2017", "val2017"):
        write_panoptic_fixture(root, split)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, panoptic_data_root: Path, quirky_root: Path) -> dict[str, Path]:
    """2-step train.py runs: demo_panoptic on the tiny synthetic set, coco_panoptic_m2f (ViT-Adapter, the paper's
    head depth and 100 queries at width 16) on the quirky split; their run directories."""
    overrides = {
        "demo_panoptic": tiny_mask_classification_overrides(panoptic_data_root),
        "coco_panoptic_m2f": [*tiny_mask_classification_overrides(quirky_root, "vit_adapter", synthetic=False),
                              "model.head.loss.train_num_points=256"],
    }
    folders = {}
    for experiment, extra in overrides.items():
        folders[experiment] = tmp_path_factory.mktemp(experiment)
        train_in_process(folders[experiment], f"experiment={experiment}", *extra)
    return folders


def _nan_as_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


@pytest.mark.parametrize("experiment", ["demo_panoptic", "coco_panoptic_m2f"])
def test_eval_reproduces_training(experiment: str, runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs[experiment]
    trained = json.loads((run / "metrics.json").read_text())
    assert {k: trained[k] for k in PQ_KEYS} == pytest.approx({k: _nan_as_none(last_logged(run, k)) for k in PQ_KEYS})
    evaluated = evaluate_in_process(run / "checkpoints" / "last.ckpt", tmp_path)
    assert {k: _nan_as_none(evaluated[k]) for k in PQ_KEYS} == {k: trained[k] for k in PQ_KEYS}


@pytest.fixture(scope="module")
def written(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """eval.py with `eval.save_predictions=true` of the quirky run's checkpoint, its queries naming classes: the
    checkpoint, and the metrics; the files are in `<checkpoint's folder>/predictions/`."""
    folder = tmp_path_factory.mktemp("panoptic_eval")
    checkpoint = _naming_classes(runs["coco_panoptic_m2f"] / "checkpoints" / "last.ckpt", folder / "classes.ckpt")
    return checkpoint, evaluate_in_process(checkpoint, folder, "eval.save_predictions=true", *EVERY_QUERY)


def test_written_files_score_the_evaluated_pq(written: tuple[Path, dict]) -> None:
    checkpoint, evaluated = written
    datamodule, _ = load_trained(checkpoint)
    results_json = checkpoint.parent / "predictions" / "panoptic_predictions.json"
    rescored = evaluate_panoptic_files(datamodule.val_annotation_file, results_json)
    assert {k: _nan_as_none(float(rescored[k[4:]])) for k in PQ_KEYS} == pytest.approx(
        {k: _nan_as_none(evaluated[k]) for k in PQ_KEYS})
    # the results format: every image (the one without segments too) at its original size, original category ids
    truth = json.loads(datamodule.val_annotation_file.read_text())
    sizes = {image["id"]: (image["height"], image["width"]) for image in truth["images"]}
    annotations = load_panoptic_annotations(results_json)
    assert sorted(a["image_id"] for a in annotations) == sorted(sizes)
    assert sum(len(a["segments_info"]) for a in annotations) > 0
    assert {s["category_id"] for a in annotations for s in a["segments_info"]} <= {c["id"] for c in truth["categories"]}
    for annotation in annotations:
        ids = read_panoptic_png(results_json.with_suffix("") / annotation["file_name"])
        assert ids.shape == sizes[annotation["image_id"]]
        assert sorted(np.unique(ids[ids > 0]).tolist()) == sorted(s["id"] for s in annotation["segments_info"])


def test_predict_draws_what_validation_wrote(written: tuple[Path, dict], quirky_root: Path, tmp_path: Path) -> None:
    """predict.py on the validation images (odd size, grayscale) draws the segments eval.py wrote for them."""
    checkpoint, _ = written
    drawn = predict_in_process(checkpoint, tmp_path, f"input={quirky_root / 'val2017'}", *EVERY_QUERY)
    datamodule, task = load_trained(checkpoint)
    to_class = {v: k for k, v in datamodule.contiguous_to_category_id.items()}
    results_json = checkpoint.parent / "predictions" / "panoptic_predictions.json"
    annotations = {Path(a["file_name"]).stem: a for a in load_panoptic_annotations(results_json)}
    assert sorted(p.stem for p in drawn) == sorted(annotations)
    for picture in drawn:
        annotation = annotations[picture.stem]
        segments = [{"id": s["id"], "category_id": to_class[s["category_id"]]} for s in annotation["segments_info"]]
        ids = read_panoptic_png(results_json.with_suffix("") / annotation["file_name"])
        rgb = np.array(Image.open(quirky_root / "val2017" / f"{picture.stem}.jpg").convert("RGB"))
        expected = draw_panoptic(rgb, ids, segments, task.class_names, task.isthing, 0.5, datamodule.palette)
        assert np.array_equal(np.asarray(Image.open(picture)), np.asarray(expected))


def test_served_beside_another_task_as_alone(written: tuple[Path, dict], quirky_root: Path, compose_config,
                                             seg_data_root: Path, tmp_path: Path) -> None:
    checkpoint, _ = written
    model = MultiTaskModel.from_checkpoints([checkpoint], names=["panoptic"])
    _, semantic = build_datamodule_and_task(compose_config("train", ["experiment=ade20k_seg",
                                                                     *tiny_seg_overrides(seg_data_root)], tmp_path))
    model.add_task(semantic.eval(), "semantic")
    datamodule, alone = load_trained(checkpoint)
    for task in (alone, model.task("panoptic")):
        task.inference.update(object_mask_threshold=0.0, overlap_threshold=0.0)
    for path in sorted((quirky_root / "val2017").glob("*.jpg")):  # odd size, grayscale
        rgb = np.array(Image.open(path).convert("RGB"))
        expected = task_predictor(alone.eval(), datamodule, torch.device("cpu"))(rgb)
        served = model.predict(rgb, task="panoptic")
        assert served["segments_info"] == expected["segments_info"] and len(served["segments_info"]) > 0
        assert served["panoptic"].shape == rgb.shape[:2] and torch.equal(served["panoptic"], expected["panoptic"])
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(model(image, task="semantic"), semantic(image))


def test_checkpoint_holds_only_trained_tensors(runs: dict[str, Path]) -> None:
    checkpoint = torch.load(runs["demo_panoptic"] / "checkpoints" / "last.ckpt", map_location="cpu",
                            weights_only=False)
    state = checkpoint["state_dict"]
    assert not any(k.startswith("encoder.backbone.") for k in state)  # demo_panoptic trains nothing inside the ViT
    assert {k.split(".")[0] for k in state} == {"encoder", "head"}
    assert any(k.startswith("encoder.neck.") for k in state) and any(k.startswith("head.transformer.") for k in state)
    metrics = json.loads((runs["demo_panoptic"] / "metrics.json").read_text())
    counted = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "_tracked")))
    assert counted == metrics["params/trainable"]


def test_validation_overlays_draw_the_segments(runs: dict[str, Path], quirky_root: Path) -> None:
    """The quirky run's overlays: image | truth | prediction at each image's original size, then a legend."""
    pictures = sorted((runs["coco_panoptic_m2f"] / "overlays" / "step_2").glob("*.png"))
    sizes = {f"{i['id']:012d}": (i["hw"][1], i["hw"][0]) for i in quirky_images()}
    assert [p.stem for p in pictures] == sorted(sizes)
    for picture in pictures:
        width, height = Image.open(picture).size
        assert height >= sizes[picture.stem][1] and width > 3 * sizes[picture.stem][0]


def test_masks_map_back_to_original_pixels() -> None:
    # a ramp in x: bilinear resampling reproduces a linear map exactly away from the borders, so each original pixel
    # must read the cell coordinate of its own centre: (x + 0.5) x scale / 4 cells, with a fractional extent
    cells = torch.arange(20, dtype=torch.float32) + 0.5
    ramp = cells.expand(1, 12, 20).clone()
    scale, (height, width) = 1.5, (29, 45)  # 45 x 1.5 / 4 = 16.875 of the 20 cells are the image, the rest padding
    mapped = masks_to_original(ramp, scale, (height, width))
    assert mapped.shape == (1, height, width)
    centres = (torch.arange(width) + 0.5) * scale / 4
    assert torch.allclose(mapped[0, 5, 2:-2], centres[2:-2], atol=1e-5)
    # where the input is exactly the image (no padding, whole cells): F.interpolate of the whole map
    logits = torch.randn(3, 8, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(masks_to_original(logits, 1.6, (20, 30)),
                          F.interpolate(logits[None], size=(20, 30), mode="bilinear", align_corners=False)[0],
                          atol=1e-5)


def test_training_targets_leave_out_crowds_void_and_padding() -> None:
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, :4] = True  # stuff
    masks[1, 4:, :4] = True  # a thing
    masks[2, 4:, 4:6] = True  # a crowd; columns 6-7 of the lower half are void
    target = panoptic_targets(masks, torch.tensor([5, 1, 1]), torch.tensor([False, False, True]))
    assert target.labels.tolist() == [5, 1] and torch.equal(target.masks, masks[:2])
    assert torch.equal(target.valid, masks[0] | masks[1])
    # the predicted masks cover whole ViT patches: a 60 px crop is padded to 64 with unlabelled pixels
    padded = fit_targets(MaskTargets(target.labels, masks.repeat(1, 8, 8)[:2, :60, :60], None), 64, 64)
    assert padded.masks.shape == (2, 64, 64) and not padded.masks[:, 60:].any() and not padded.masks[:, :, 60:].any()
    assert padded.valid[:60, :60].all() and not padded.valid[60:].any() and not padded.valid[:, 60:].any()
    nothing = panoptic_targets(masks[2:], torch.tensor([1]), torch.tensor([True]))
    assert len(nothing.labels) == 0 and not nothing.has_valid_pixels


def _tiny_task(compose_config, data_root: Path, tmp_path: Path) -> tuple[L.LightningDataModule, PanopticTask]:
    """A tiny demo_panoptic with Convpass adapters inside the ViT, so trained tensors sit beside frozen ones."""
    overrides = ["experiment=demo_panoptic", *tiny_mask_classification_overrides(data_root),
                 "model/adapter=convpass_demo"]
    return build_datamodule_and_task(compose_config("train", overrides, tmp_path))


def test_all_void_or_crowd_crops_train_nothing_and_nan_stops(compose_config, panoptic_data_root: Path,
                                                              tmp_path: Path) -> None:
    _, task = _tiny_task(compose_config, panoptic_data_root, tmp_path)
    crowd = torch.zeros(1, 64, 64, dtype=torch.bool)
    crowd[0, 10:30, 10:30] = True
    batch = {"image": list(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))),
             "masks": [crowd, torch.zeros(0, 64, 64, dtype=torch.bool)], "labels": [torch.tensor([2]),
                                                                              torch.zeros(0, dtype=torch.int64)],
             "iscrowd": [torch.tensor([True]), torch.zeros(0, dtype=torch.bool)], "name": ["crowd", "void"]}
    task.train()
    loss = task.training_step(batch, 0)
    loss.backward()
    trained = [p for p in task.parameters() if p.requires_grad]
    assert loss.item() == 0.0 and all(p.grad is not None and not p.grad.any() for p in trained)
    with torch.no_grad():
        next(p for n, p in task.named_parameters() if n.startswith("head.class_predictor")).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="crowd"):
        task.training_step(batch, 0)


def test_only_method_neck_and_head_train_and_the_vit_is_unchanged(compose_config, panoptic_data_root: Path,
                                                                   tmp_path: Path) -> None:
    datamodule, task = _tiny_task(compose_config, panoptic_data_root, tmp_path)
    frozen_keys = task.frozen_state_keys()
    before = {k: v.clone() for k, v in task.state_dict().items() if k in frozen_keys}
    trainable = {n: p.detach().clone() for n, p in task.named_parameters() if p.requires_grad}
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(task, datamodule=datamodule)
    after = task.state_dict()
    assert frozen_keys and all(torch.equal(before[k], after[k]) for k in frozen_keys)
    changed = {n for n, p in task.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])}
    assert {".".join(n.split(".")[:2]) if n.startswith("encoder.") else n.split(".")[0] for n in changed} == {
        "encoder.backbone", "encoder.neck", "head"}
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in task.parameters() if p.requires_grad}
