"""An RGB image in, a task's prediction at the image's own size out, through the task's own preprocessing.

Each trained model keeps the evaluation preprocessing of the data it was trained on (its datamodule's
resize and normalisation), so a predictor is built from the task *and* its datamodule; predict.py and
`MultiTaskModel.predict` both go through here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vitadapter.data import COCODataModule, SegmentationDataModule, build_det_val_transform, build_val_transform
from vitadapter.data.coco_panoptic_datamodule import COCOPanopticDataModule
from vitadapter.data.coco_panoptic_transforms import build_panoptic_val_transform
from vitadapter.data.depth_datamodule import DepthDataModule
from vitadapter.data.depth_transforms import build_depth_val_transform
from vitadapter.tasks import DetectionTask, InstanceSegmentationTask, PanopticTask, SegmentationTask
from vitadapter.tasks.depth import DepthTask

Predictor = Callable[[np.ndarray], Any]


def _image_batch(normalised: np.ndarray, device: torch.device) -> Tensor:
    """H×W×3 float normalised image -> 1×3×H×W tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1))).float()[None].to(device)


def segmentation_predictor(task: SegmentationTask, datamodule: SegmentationDataModule,
                           device: torch.device) -> Callable[[np.ndarray], Tensor]:
    """H×W×3 uint8 RGB -> H×W class map (long), with the task's inference settings (whole/slide, TTA)."""
    transform = build_val_transform(scale=datamodule.test_scale, mean=datamodule.mean, std=datamodule.std)

    def predict(rgb: np.ndarray) -> Tensor:
        image = _image_batch(transform(image=rgb)["image"], device)
        return task.predict_probabilities(image, rgb.shape[:2]).argmax(dim=1)[0]

    return predict


def depth_predictor(task: DepthTask, datamodule: DepthDataModule,
                    device: torch.device) -> Callable[[np.ndarray], Tensor]:
    """H×W×3 uint8 RGB -> H×W depth in metres (float), with the task's inference settings (whole/slide, flip)
    and its depth range; the image is rescaled into the datamodule's `test_scale` as evaluation rescales it."""
    transform = build_depth_val_transform(test_scale=datamodule.test_scale, mean=datamodule.mean, std=datamodule.std)

    def predict(rgb: np.ndarray) -> Tensor:
        return task.predict_depth(_image_batch(transform(image=rgb)["image"], device), rgb.shape[:2])[0]

    return predict


def detection_predictor(task: DetectionTask | InstanceSegmentationTask, datamodule: COCODataModule,
                        device: torch.device) -> Callable[[np.ndarray], dict[str, Tensor]]:
    """H×W×3 uint8 RGB -> detections or instances (`boxes`, `scores`, `labels`, maybe `masks`) in the image's
    pixels."""
    transform = build_det_val_transform(datamodule.image_size, mean=datamodule.mean, std=datamodule.std)

    def predict(rgb: np.ndarray) -> dict[str, Tensor]:
        sample = transform(image=rgb, boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))
        return task.predict([sample["image"].to(device)], [sample["scale"]], [rgb.shape[:2]])[0]

    return predict


def panoptic_predictor(task: PanopticTask, datamodule: COCOPanopticDataModule,
                       device: torch.device) -> Callable[[np.ndarray], dict[str, Any]]:
    """H×W×3 uint8 RGB -> panoptic segmentation (`panoptic` segment ids, `segments_info`) at the image's size."""
    transform = build_panoptic_val_transform(datamodule.image_size, mean=datamodule.mean, std=datamodule.std)

    def predict(rgb: np.ndarray) -> dict[str, Any]:
        sample = transform(rgb)
        return task.predict([sample["image"].to(device)], [sample["scale"]], [rgb.shape[:2]])[0]

    return predict


def task_predictor(task: Any, datamodule: Any, device: torch.device) -> Predictor:
    """The predictor of a segmentation, detection, instance segmentation, panoptic or depth task (call it in eval
    mode, under inference_mode)."""
    if isinstance(task, (DetectionTask, InstanceSegmentationTask)):
        return detection_predictor(task, datamodule, device)
    if isinstance(task, PanopticTask):
        return panoptic_predictor(task, datamodule, device)
    if isinstance(task, SegmentationTask):
        return segmentation_predictor(task, datamodule, device)
    if isinstance(task, DepthTask):
        return depth_predictor(task, datamodule, device)
    raise TypeError(f"predictions are drawn for DetectionTask, InstanceSegmentationTask, PanopticTask, "
                    f"SegmentationTask and DepthTask, not {type(task).__name__}")
