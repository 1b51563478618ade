"""The prediction run behind predict.py: draw a checkpoint's (or several checkpoints') predictions on images.

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

from vitadapter.checkpoint import TrainedCheckpoint
from vitadapter.inference.predictors import task_predictor
from vitadapter.inference.visualize import draw_depth, draw_detections, draw_panoptic, draw_segmentation
from vitadapter.multitask import MultiTaskModel
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.tasks import DetectionTask, InstanceSegmentationTask, PanopticTask
from vitadapter.tasks.depth import DepthTask

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


def task_drawer(task: L.LightningModule, datamodule: L.LightningDataModule, device: torch.device,
                score_threshold: float, alpha: float) -> Drawer:
    """Image -> the task's predictions drawn over it, through its datamodule's evaluation preprocessing:
    detections above `score_threshold`, the class map (in the dataset's colours if it has them) with a legend,
    or the image beside its depth map, coloured on the task's depth range, with a colour bar in metres; panoptic:
    the segments in their classes' colours (things outlined) with a legend."""
    predict = task_predictor(task, datamodule, device)
    if isinstance(task, (DetectionTask, InstanceSegmentationTask)):
        return lambda rgb: Image.fromarray(draw_detections(rgb, predict(rgb), task.class_names, score_threshold, alpha))
    palette = getattr(datamodule, "palette", None)  # the dataset's class colours (data.palette, classes.txt)
    if isinstance(task, PanopticTask):
        return lambda rgb: _draw_panoptic(rgb, predict(rgb), task, alpha, palette)
    if isinstance(task, DepthTask):
        # one fixed scale (not each image's own range): a colour means the same depth in every picture
        return lambda rgb: draw_depth(rgb, predict(rgb).float().cpu().numpy(), task.min_depth, task.max_depth)
    return lambda rgb: draw_segmentation(rgb, predict(rgb).cpu().numpy(), task.class_names, alpha, palette)


def _draw_panoptic(rgb: np.ndarray, prediction: dict, task: PanopticTask, alpha: float,
                   palette: list[tuple[int, int, int]] | None) -> Image.Image:
    """The task's panoptic prediction of `rgb` drawn over it (`draw_panoptic`)."""
    return draw_panoptic(rgb, prediction["panoptic"].cpu().numpy(), prediction["segments_info"], task.class_names,
                         task.isthing, alpha, palette)


def _output_names(images: list[Path]) -> list[str]:
    stems = [p.stem for p in images]
    # a.jpg and a.png in one folder would overwrite each other's drawing
    return [f"{p.stem}{p.suffix.replace('.', '_')}.png" if stems.count(p.stem) > 1 else f"{p.stem}.png" for p in images]


def draw_all(draw: Drawer, images: list[Path], output_dir: Path) -> list[Path]:
    """Saves `draw`'s picture of every image as `output_dir/<image name>.png`; returns the written paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with torch.inference_mode():
        for path, name in zip(images, _output_names(images)):
            draw(read_rgb(path)).save(output_dir / name)
            written.append(output_dir / name)
    log.info("wrote %d image(s) to %s", len(written), output_dir)
    return written


def run_prediction(cfg: DictConfig) -> list[Path]:
    """Draws the checkpoint's predictions on every input image and saves them as PNGs in `cfg.output`.

    With several checkpoints (`ckpt_path=[A.ckpt,B.ckpt]`) they are served from one frozen ViT
    (`MultiTaskModel`), each with its own preprocessing and inference settings, and each task's drawings go
    to `cfg.output/<task name>/`.

    Args:
        cfg: the composed predict.yaml config with the checkpoint's model/data sections (one checkpoint).

    Returns:
        The written PNG paths.
    """
    images = list_images(cfg.input)
    output_dir = Path(cfg.output)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    if not isinstance(cfg.ckpt_path, str):
        return _predict_several(cfg, images, output_dir, device)
    datamodule, task = build_datamodule_and_task(cfg)
    TrainedCheckpoint.read(cfg.ckpt_path, f"ckpt_path={cfg.ckpt_path!r}").load_into(task)
    task.eval().to(device)
    return draw_all(task_drawer(task, datamodule, device, float(cfg.score_threshold), float(cfg.alpha)), images,
                    output_dir)


def _predict_several(cfg: DictConfig, images: list[Path], output_dir: Path, device: torch.device) -> list[Path]:
    names = None if cfg.get("task_names") is None else [str(name) for name in cfg.task_names]
    model = MultiTaskModel.from_checkpoints([str(path) for path in cfg.ckpt_path], names).to(device)
    memory = model.memory_bytes()
    log.info("serving %s on one frozen ViT: %.1f MB shared, %s", ", ".join(model.task_names), memory["shared"] / 1e6,
             ", ".join(f"{name} {size / 1e6:.1f} MB own" for name, size in memory["tasks"].items()))
    written = []
    for name in model.task_names:
        draw = task_drawer(model.task(name), model.datamodules[name], device, float(cfg.score_threshold),
                           float(cfg.alpha))
        written += draw_all(draw, images, output_dir / name)
    return written
