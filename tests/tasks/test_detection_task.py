"""The detection task in-process: every experiment builds, predictions land in original pixels, AP of the truth."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tests.helpers import EXPERIMENTS, experiment_neck, tiny_det_overrides
from vitadapter.data import COCODetectionDataset, build_det_val_transform
from vitadapter.metrics import COCOEvaluator
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.tasks import DetectionTask
from vitadapter.tasks.detection import detections_to_original

DET_EXPERIMENTS = [e for e in EXPERIMENTS if "_det" in e]


def _overrides(experiment: str, data_root) -> list[str]:
    detector = "mask_rcnn_light" if experiment == "demo_det" else "mask_rcnn"
    return [f"experiment={experiment}", *tiny_det_overrides(data_root, detector, experiment_neck(experiment))]


@pytest.mark.parametrize("experiment", DET_EXPERIMENTS)
def test_every_detection_experiment_composes_and_instantiates(experiment, compose_config, tmp_path,
                                                              det_data_root) -> None:
    cfg = compose_config("train", _overrides(experiment, det_data_root), tmp_path)
    assert cfg.monitor.metric == "val/bbox_AP" and list(cfg.monitor.report) == ["val/segm_AP"]
    datamodule, task = build_datamodule_and_task(cfg)
    assert isinstance(task, DetectionTask) and task.num_classes == len(datamodule.class_names) == 8
    assert task.run_config["model"]["backbone"]["name"] == "test_vit"
    assert task.backbone is task.detector.backbone.encoder.backbone and task.iou_types == ("bbox", "segm")
    task.eval()
    with torch.no_grad():
        (pred,) = task.predict([torch.randn(3, 96, 64)], scales=[0.5], orig_sizes=[(192, 128)])
    assert pred["masks"].shape == (len(pred["boxes"]), 192, 128) and pred["masks"].dtype == torch.bool
    assert (pred["boxes"][:, 2] <= 128).all() and (pred["boxes"][:, 3] <= 192).all()


def test_detections_to_original_undoes_the_scale() -> None:
    masks = torch.zeros(1, 1, 40, 60)
    masks[0, 0, 10:20, 20:40] = 0.9
    detection = {"boxes": torch.tensor([[20.0, 10, 40, 20]]), "scores": torch.tensor([0.8]),
                 "labels": torch.tensor([3]), "masks": masks}
    out = detections_to_original(detection, scale=0.5, orig_size=(80, 120))
    assert torch.equal(out["boxes"], torch.tensor([[40.0, 20, 80, 40]]))
    assert out["masks"].shape == (1, 80, 120) and out["masks"].dtype == torch.bool
    ys, xs = torch.nonzero(out["masks"][0], as_tuple=True)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (20, 39, 40, 79)
    beyond = detections_to_original({**detection, "boxes": torch.tensor([[50.0, 30, 61, 41]])}, 0.5, (80, 120))
    assert torch.equal(beyond["boxes"], torch.tensor([[100.0, 60, 120, 80]]))  # clipped to the original image
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 1, 40, 60)}
    assert detections_to_original(empty, 0.5, (80, 120))["masks"].shape == (0, 80, 120)


@pytest.mark.parametrize("image_size", [48, 192])
def test_ground_truth_shaped_predictions_score_100_in_original_pixels(image_size, compose_config, tmp_path,
                                                                      det_data_root) -> None:
    """The validation targets, as if the model had predicted them at the resized scale, map back to AP 100."""
    cfg = compose_config("train", _overrides("demo_det", det_data_root), tmp_path)
    datamodule, _ = build_datamodule_and_task(cfg)
    datamodule.prepare_data()
    transform = build_det_val_transform(image_size, mean=datamodule.mean, std=datamodule.std)
    dataset = COCODetectionDataset(datamodule.root, "val2017", transform=transform, with_masks=True)
    evaluator = COCOEvaluator(datamodule.val_annotation_file, datamodule.contiguous_to_category_id)
    for index in range(len(dataset)):
        sample = dataset[index]
        target = sample["target"]
        assert max(sample["image"].shape[-2:]) == image_size and sample["scale"] == image_size / 96
        detection = {"boxes": target["boxes"], "scores": torch.ones(len(target["boxes"])),
                     "labels": target["labels"], "masks": target["masks"][:, None].float()}
        prediction = detections_to_original(detection, sample["scale"], sample["orig_size"])
        evaluator.update([sample["image_id"]], [prediction])
    metrics = evaluator.compute()
    assert metrics["bbox_AP"] == pytest.approx(100.0) and metrics["bbox_AP75"] == pytest.approx(100.0)
    assert metrics["segm_AP50"] == pytest.approx(100.0)
    if image_size > 96:  # upscaled masks come back exactly; downscaled ones lose detail (IoU ~0.9)
        assert metrics["segm_AP"] == pytest.approx(100.0)


def test_validation_logs_ap_and_keeps_results(compose_config, tmp_path, det_data_root) -> None:
    cfg = compose_config("train", _overrides("demo_det", det_data_root), tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=tmp_path)
    trainer.validate(task, datamodule=datamodule, verbose=False)
    summary = task.summary_metrics()
    assert sorted(summary) == sorted(f"val/{t}_{m}" for t in ("bbox", "segm")
                                     for m in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
    logged = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    assert {k: float(v) for k, v in logged.items()} == pytest.approx({k: v for k, v in summary.items() if v is not None})
    assert {r["image_id"] for r in task.evaluator.results()} <= {1, 2, 3}
    assert "| bbox" in task.results_table() and "| segm" in task.results_table()


def test_missing_coco_dataset_says_where_to_get_it(compose_config, tmp_path) -> None:
    cfg = compose_config("train", ["experiment=coco_det", "model/backbone=test_vit",
                                   f"data.root={tmp_path / 'nowhere'}"], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    assert task.num_classes == 80 and datamodule.class_names[-1] == "toothbrush"
    datamodule.prepare_data()
    with pytest.raises(FileNotFoundError, match="download_coco.sh") as error:
        datamodule.setup("fit")
    assert "instances_train2017.json" in str(error.value)
