"""Instance segmentation with Mask2Former (InstanceSegmentationTask) on COCO instances: a 2-step coco_ins_m2f run whose
eval.py reproduces the logged AP and whose predictions.json pycocotools scores the same, predictions in the detectors'
format and original pixels, the padding of a training crop left out, predict.py's drawings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.helpers import evaluate_in_process, last_logged, predict_in_process, tiny_mask_classification_overrides
from tests.helpers import train_in_process
from vitadapter.heads.mask2former import mask_boxes
from vitadapter.inference.predictors import task_predictor
from vitadapter.inference.visualize import draw_detections
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.run.predict import read_rgb
from vitadapter.run.trained import load_trained
from vitadapter.tasks import InstanceSegmentationTask
from vitadapter.tasks.instance_segmentation import content_size, instance_targets

AP_KEYS = [f"val/{t}_{m}" for t in ("bbox", "segm") for m in ("AP", "AP50", "AP75", "APs", "APm", "APl")]


def _overrides(data_root: Path) -> list[str]:
    # the paper's head depth at width 16 with fewer queries and points: a 2-step model on 96 px images
    return ["experiment=coco_ins_m2f", *tiny_mask_classification_overrides(data_root, "vit_adapter", panoptic=False),
            "model.head.num_queries=20", "model.head.loss.train_num_points=256"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, det_data_root: Path) -> Path:
    """A 2-step coco_ins_m2f train.py run (ViT-Adapter) on the tiny synthetic COCO set; its run directory."""
    folder = tmp_path_factory.mktemp("coco_ins_m2f")
    train_in_process(folder, *_overrides(det_data_root))
    return folder


def _pycocotools_ap(ground_truth: COCO, results: list[dict], iou_type: str) -> float:
    """AP in percent of COCO results scored by pycocotools directly (independent of vitadapter's COCOEvaluator)."""
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0]) * 100


def test_eval_reproduces_training_and_predictions_json_scores_the_same(run: Path, tmp_path: Path,
                                                                      det_data_root: Path) -> None:
    trained = json.loads((run / "metrics.json").read_text())
    assert {k: trained[k] for k in AP_KEYS} == pytest.approx({k: last_logged(run, k) for k in AP_KEYS}, abs=1e-4)
    evaluated = evaluate_in_process(run / "checkpoints" / "last.ckpt", tmp_path, "eval.save_predictions=true")
    assert {k: evaluated[k] for k in AP_KEYS} == {k: trained[k] for k in AP_KEYS}

    annotations = det_data_root / "annotations" / "instances_val2017.json"
    results = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    truth = COCO(str(annotations))
    assert results and {r["category_id"] for r in results} <= set(truth.cats)
    for iou_type in ("segm", "bbox"):
        assert _pycocotools_ap(truth, results, iou_type) == pytest.approx(evaluated[f"val/{iou_type}_AP"], abs=1e-6)
    for r in results:  # original image ids and pixels, at most top_k per image
        image = truth.imgs[r["image_id"]]
        x, y, w, h = r["bbox"]
        assert 0 <= x <= x + w <= image["width"] and 0 <= y <= y + h <= image["height"]
        assert r["segmentation"]["size"] == [image["height"], image["width"]]
    assert max(np.unique([r["image_id"] for r in results], return_counts=True)[1]) <= 100


def test_predictions_are_masks_in_original_pixels_with_boxes_around_them(run: Path) -> None:
    _, task = load_trained(run / "checkpoints" / "last.ckpt")
    assert isinstance(task, InstanceSegmentationTask) and task.iou_types == ("bbox", "segm")
    with torch.no_grad():
        (prediction,) = task.predict([torch.randn(3, 96, 64)], scales=[0.5], orig_sizes=[(192, 129)])
    masks = prediction["masks"]
    assert masks.shape == (len(prediction["boxes"]), 192, 129) and masks.dtype == torch.bool
    assert len(masks) == 100  # the top_k of 20 queries x 8 classes
    assert torch.equal(prediction["boxes"], mask_boxes(masks))
    assert prediction["scores"].shape == prediction["labels"].shape == (len(masks),)
    with pytest.raises(RuntimeError, match="eval mode"):
        task.train().predict([torch.randn(3, 96, 64)], [0.5], [(192, 129)])


def test_padding_of_a_training_crop_is_unlabelled(compose_config, det_data_root: Path, tmp_path: Path) -> None:
    """The image occupies the top-left `content_size` of every training input (the rest is the transform's zero
    padding), so only those pixels are valid in the targets."""
    cfg = compose_config("train", [*_overrides(det_data_root), "data.scale_range=[0.3,0.6]"], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    for image, target, orig_size, scale in zip(batch["images"], batch["targets"], batch["orig_sizes"],
                                               batch["scales"]):
        height, width = content_size(orig_size, scale, image.shape[-1])
        painted = image.abs().sum(0) > 0
        assert height < image.shape[-2] and painted[:height, :width].all() and not painted[height:].any()
        assert not painted[:, width:].any()
        targets = instance_targets(target, orig_size, scale, image.shape[-1])
        assert torch.equal(targets.valid, torch.zeros_like(painted).index_fill(0, torch.arange(height), True)
                           & torch.zeros_like(painted).index_fill(1, torch.arange(width), True))
        assert torch.equal(targets.masks, target["masks"].bool()) and torch.equal(targets.labels, target["labels"])
    task.train()
    assert torch.isfinite(task.training_step(batch, 0))


def test_predict_draws_the_validation_path_s_instances(run: Path, det_data_root: Path, tmp_path: Path) -> None:
    checkpoint = run / "checkpoints" / "last.ckpt"
    drawn = predict_in_process(checkpoint, tmp_path, f"input={det_data_root / 'val2017'}", "score_threshold=0.3")
    datamodule, task = load_trained(checkpoint)
    datamodule.setup("validate")
    predict = task_predictor(task, datamodule, torch.device("cpu"))
    assert len(drawn) == len(datamodule.val_set) == 3
    with torch.no_grad():
        for index, picture in enumerate(sorted(drawn)):
            sample = datamodule.val_set[index]
            rgb = read_rgb(det_data_root / "val2017" / f"{picture.stem}.jpg")
            served = predict(rgb)
            (validated,) = task.predict([sample["image"]], [sample["scale"]], [sample["orig_size"]])
            assert all(torch.equal(served[k], validated[k]) for k in ("boxes", "scores", "labels", "masks"))
            expected = draw_detections(rgb, served, task.class_names, 0.3, 0.5)
            assert np.array_equal(np.asarray(Image.open(picture)), expected)
