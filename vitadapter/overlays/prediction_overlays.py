"""At every validation, the first few validation images drawn as image | ground truth | prediction.

The pictures go to the run directory as PNGs and to every active tracker (TensorBoard, W&B, MLflow);
the same images every time, so that validations can be compared picture by picture.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
from PIL import Image

from vitadapter.overlays.draw import depth_overlay, detection_overlay, panoptic_overlay, segmentation_overlay
from vitadapter.run.trackers import log_pictures


class PredictionOverlays(L.Callback):
    """Draws the first `num_images` validation images with their ground truth and the task's prediction.

    Segmentation: the image, the ground-truth classes and the predicted classes blended over it, and a
    legend of the classes in either; detection: the image, the ground-truth boxes and the detections
    scoring at least `score_threshold` (boxes, masks, "class score"); depth: the image, the ground-truth and
    the predicted depths coloured on the task's depth range (pixels without ground truth black), and a colour
    bar in metres; panoptic: the image, the ground-truth and the predicted segments (class colours, thing outlines)
    and a legend of the classes in either. Each validation writes
    `output_dir/step_<global step>/<image name>.png` and logs the pictures under `tag`
    (`vitadapter.run.trackers.log_pictures`). The validation loader is not shuffled, so the images are
    the same at every validation. Under DDP rank 0 draws the first images *it* validates (with
    Lightning's distributed sampler: images 0, W, 2W, ... of the validation set for W processes). The
    sanity check before training is not drawn.

    Args:
        output_dir: folder of the `step_<k>` folders (the run directory's `overlays/`).
        num_images: how many images to draw (0: none).
        score_threshold: detections below this score are not drawn.
        alpha: opacity of class colours and masks.
        max_size: longest side of each panel (larger images are drawn scaled down).
        tag: the trackers' key for the pictures.
    """

    def __init__(self, output_dir: str | Path, num_images: int = 4, score_threshold: float = 0.5, alpha: float = 0.5,
                 max_size: int = 512, tag: str = "val/overlays") -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.num_images = num_images
        self.score_threshold = score_threshold
        self.alpha = alpha
        self.max_size = max_size
        self.tag = tag
        self.pictures: dict[str, Image.Image] = {}

    def _active(self, trainer: L.Trainer) -> bool:
        return trainer.is_global_zero and not trainer.sanity_checking and self.num_images > 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.pictures = {}

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self._active(trainer) or len(self.pictures) >= self.num_images or not outputs:
            return
        for name, picture in self._draw(trainer, pl_module, outputs, batch):
            if len(self.pictures) == self.num_images:
                break
            self.pictures[name] = picture

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Mapping[str, Any],
              batch: Mapping[str, Any]) -> Iterator[tuple[str, Image.Image]]:
        """(name, picture) for the batch's images, lazily: only as many are drawn as are taken."""
        # the datamodule normalised the images (with the backbone's statistics unless data.mean/std are set)
        normalisation = trainer.datamodule if trainer.datamodule is not None else pl_module.backbone
        mean, std = normalisation.mean, normalisation.std
        if "depth" in batch:  # depth: lists of images, depths (metres, 0 invalid), names; outputs["preds"] in metres
            for image, depth, pred, name in zip(batch["image"], batch["depth"], outputs["preds"], batch["name"]):
                yield str(name), depth_overlay(image, depth, pred, pl_module.min_depth, pl_module.max_depth, mean, std,
                                               self.max_size)
            return
        common = {"class_names": pl_module.class_names, "mean": mean, "std": std, "alpha": self.alpha,
                  "max_size": self.max_size}
        if "panoptic" in batch:  # panoptic: lists of images, segment-id maps, segments, names; outputs["predictions"]
            for image, truth, segments, prediction, name in zip(batch["image"], batch["panoptic"],
                                                                batch["segments_info"], outputs["predictions"],
                                                                batch["name"]):
                yield str(name), panoptic_overlay(image, truth, segments, prediction["panoptic"],
                                                  prediction["segments_info"], isthing=pl_module.isthing,
                                                  palette=getattr(trainer.datamodule, "palette", None), **common)
        elif "mask" in batch:  # segmentation: lists of images, masks, names; outputs["preds"] one map per image
            for image, mask, pred, name in zip(batch["image"], batch["mask"], outputs["preds"], batch["name"]):
                yield str(name), segmentation_overlay(image, mask, pred, ignore_index=pl_module.ignore_index,
                                                      palette=getattr(trainer.datamodule, "palette", None), **common)
        elif "targets" in batch:  # detection: outputs["predictions"] in original pixels, one dict per image
            for image, target, prediction, scale, orig_size, image_id in zip(
                batch["images"], batch["targets"], outputs["predictions"], batch["scales"], batch["orig_sizes"],
                batch["image_ids"],
            ):
                yield f"image_{image_id}", detection_overlay(image, target, prediction, scale, orig_size,
                                                             score_threshold=self.score_threshold, **common)
        else:
            raise TypeError(f"PredictionOverlays draws segmentation batches (image, mask, name), depth batches (image, "
                            f"depth, name), panoptic batches (image, panoptic, segments_info, name) and detection "
                            f"batches (images, targets, ...), not one with keys "
                            f"{sorted(batch)}; set callbacks.prediction_overlays=null to turn it off")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer) or not self.pictures:
            return
        step = trainer.global_step
        folder = self.output_dir / f"step_{step}"
        shutil.rmtree(folder, ignore_errors=True)  # a repeated validation of the same step replaces its pictures
        folder.mkdir(parents=True)
        files = {}
        for name, picture in self.pictures.items():
            files[name] = folder / f"{name}.png"
            picture.save(files[name])
        log_pictures(trainer.loggers, self.tag, files, step)
        self.pictures = {}
