"""The prediction run behind predict.py: draw a checkpoint's predictions on images and save PNGs.

The model is rebuilt from the checkpoint's config (as in eval.py) and each image goes through the
datamodule's own evaluation preprocessing (resize and the training normalisation); predictions are
drawn at the image's original size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError

from vitadapter.data import COCODataModule, SegmentationDataModule, build_det_val_transform, build_val_transform
from vitadapter.inference.visualize import draw_detections, draw_segmentation
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.tasks import DetectionTask, SegmentationTask

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

Drawer = Callable[[np.ndarray], Image.Image]


def list_images(input_path: str | Path) -> list[Path]:
    """The image itself, or the images directly inside a folder (sorted by name).

    Args:
        input_path: an image file or a folder.

    Returns:
        The image paths.
    """
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(f"input={str(input_path)!r} does not exist; give an image file or a folder of images")
    if path.is_file():
        return [path]
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"the folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def read_rgb(path: Path) -> np.ndarray:
    """Decodes an image file as H×W×3 uint8 RGB (grayscale, palette and RGBA converted)."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise OSError(f"cannot read image {path}: {err}. Is it an image file?") from err


def load_checkpoint_weights(task: L.LightningModule, ckpt_path: str | Path) -> None:
    """Loads a vitadapter checkpoint's trainable weights (the frozen backbone is verified, not loaded)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    task.on_load_checkpoint(checkpoint)
    task.load_state_dict(checkpoint["state_dict"])


def detection_drawer(
    task: DetectionTask, datamodule: COCODataModule, device: torch.device, score_threshold: float, alpha: float
) -> Drawer:
    """Image -> drawn detections, through the COCO datamodule's evaluation transform."""
    transform = build_det_val_transform(datamodule.image_size, mean=datamodule.mean, std=datamodule.std)

    def draw(rgb: np.ndarray) -> Image.Image:
        sample = transform(image=rgb, boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))
        prediction = task.predict([sample["image"].to(device)], [sample["scale"]], [rgb.shape[:2]])[0]
        return Image.fromarray(draw_detections(rgb, prediction, task.class_names, score_threshold, alpha))

    return draw


def segmentation_drawer(task: SegmentationTask, datamodule: SegmentationDataModule, device: torch.device,
                        alpha: float) -> Drawer:
    """Image -> class map blended over it (in the dataset's colours if it has them) with a legend, through the
    datamodule's evaluation transform."""
    transform = build_val_transform(scale=datamodule.test_scale, mean=datamodule.mean, std=datamodule.std)
    palette = getattr(datamodule, "palette", None)  # the dataset's class colours (data.palette, classes.txt)

    def draw(rgb: np.ndarray) -> Image.Image:
        normalised = transform(image=rgb)["image"]
        image = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1))).float()[None].to(device)
        class_map = task.predict_probabilities(image, rgb.shape[:2]).argmax(dim=1)[0]
        return draw_segmentation(rgb, class_map.cpu().numpy(), task.class_names, alpha, palette)

    return draw


def _output_names(images: list[Path]) -> list[str]:
    stems = [p.stem for p in images]
    # a.jpg and a.png in one folder would overwrite each other's drawing
    return [f"{p.stem}{p.suffix.replace('.', '_')}.png" if stems.count(p.stem) > 1 else f"{p.stem}.png" for p in images]


def run_prediction(cfg: DictConfig) -> list[Path]:
    """Draws the checkpoint's predictions on every input image and saves them as PNGs in `cfg.output`.

    Args:
        cfg: the composed predict.yaml config with the checkpoint's model/data sections.

    Returns:
        The written PNG paths.
    """
    images = list_images(cfg.input)
    output_dir = Path(cfg.output)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    datamodule, task = build_datamodule_and_task(cfg)
    load_checkpoint_weights(task, cfg.ckpt_path)
    task.eval().to(device)
    if isinstance(task, DetectionTask):
        draw = detection_drawer(task, datamodule, device, float(cfg.score_threshold), float(cfg.alpha))
    elif isinstance(task, SegmentationTask):
        draw = segmentation_drawer(task, datamodule, device, float(cfg.alpha))
    else:
        raise TypeError(f"predict.py draws DetectionTask and SegmentationTask predictions, not {type(task).__name__}")
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with torch.inference_mode():
        for path, name in zip(images, _output_names(images)):
            drawing = draw(read_rgb(path))
            drawing.save(output_dir / name)
            written.append(output_dir / name)
    log.info("wrote %d image(s) to %s", len(written), output_dir)
    return written
