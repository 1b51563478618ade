"""Drawing predictions on images: detections (boxes, masks, class names) and segmentation class maps."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

_LEGEND_ROW = 18  # pixels per legend entry
_LEGEND_SWATCH = 12


def class_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """One distinct, saturated RGB colour per class (hues spaced by the golden ratio, so neighbours differ).

    Args:
        num_classes: number of classes.

    Returns:
        `num_classes` (r, g, b) tuples, 0..255; the same for every call.
    """
    colors = []
    for k in range(num_classes):
        hue = (k * 0.618033988749895) % 1.0
        value = 0.95 if k % 2 == 0 else 0.75
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


def _palette(num_classes: int, palette: Sequence[Sequence[int]] | None) -> list[tuple[int, int, int]]:
    if palette is None:
        return class_palette(num_classes)
    if len(palette) != num_classes:
        raise ValueError(f"the palette has {len(palette)} colours for {num_classes} classes")
    return [(int(r), int(g), int(b)) for r, g, b in palette]


def draw_detections(
    image: np.ndarray,
    prediction: Mapping[str, Tensor],
    class_names: Sequence[str],
    score_threshold: float = 0.5,
    alpha: float = 0.5,
) -> np.ndarray:
    """Draws the detections scoring at least `score_threshold`: masks, boxes and "class score" labels.

    Ground truth (no `scores`) is drawn whole, labelled with the class names alone.

    Args:
        image: H×W×3 uint8 RGB (the original image).
        prediction: `boxes` (N×4 xyxy, original pixels), `labels` (0..K-1) and optionally `scores`
            and `masks` (N×H×W bool).
        class_names: one name per label.
        score_threshold: detections below this score are not drawn.
        alpha: mask opacity.

    Returns:
        The drawn H×W×3 uint8 RGB image.
    """
    boxes = prediction["boxes"].detach().cpu().float()
    keep = torch.ones(len(boxes), dtype=torch.bool)
    scores = prediction.get("scores")
    if scores is not None:
        keep = scores.detach().cpu() >= score_threshold
    boxes = boxes[keep]
    labels = prediction["labels"].detach().cpu()[keep].tolist()
    palette = class_palette(len(class_names))
    colors = [palette[k] for k in labels]
    canvas = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if prediction.get("masks") is not None and len(labels):
        masks = prediction["masks"].detach().cpu()[keep].bool()
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colors)
    if len(labels):
        if scores is None:
            captions = [class_names[k] for k in labels]
        else:
            captions = [f"{class_names[k]} {s:.2f}" for k, s in zip(labels, scores.detach().cpu()[keep].tolist())]
        canvas = draw_bounding_boxes(canvas, boxes, labels=captions, colors=colors, width=2)
    return canvas.permute(1, 2, 0).numpy()


def blend_class_map(
    image: np.ndarray, class_map: np.ndarray, num_classes: int, alpha: float = 0.5, ignore_index: int | None = None,
    palette: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Blends each pixel's class colour (`palette`, else `class_palette`) over the image.

    Args:
        image: H×W×3 uint8 RGB.
        class_map: H×W integer class indices (0..K-1, or `ignore_index`).
        num_classes: K.
        alpha: opacity of the class colours.
        ignore_index: label value drawn as the bare image (unlabelled pixels of a ground truth).
        palette: one RGB colour per class (the dataset's, e.g. `data.palette`); None: `class_palette`.

    Returns:
        The H×W×3 uint8 RGB blend.
    """
    if class_map.shape != image.shape[:2]:
        raise ValueError(f"class map {class_map.shape} and image {image.shape[:2]} differ in size")
    ignored = class_map == ignore_index if ignore_index is not None else np.zeros(class_map.shape, dtype=bool)
    colours = np.array(_palette(num_classes, palette), dtype=np.float32).reshape(-1, 3)
    colors = colours[np.where(ignored, 0, class_map)]
    blended = np.where(ignored[..., None], image, (1.0 - alpha) * image.astype(np.float32) + alpha * colors)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def classes_by_area(*class_maps: np.ndarray, ignore_index: int | None = None) -> list[int]:
    """The classes present in the maps, largest total area first (ties by index); `ignore_index` left out."""
    ids, counts = np.unique(np.concatenate([m.ravel() for m in class_maps]), return_counts=True)
    return [int(i) for i in ids[np.argsort(-counts, kind="stable")] if i != ignore_index]


def add_legend(picture: np.ndarray, classes: Sequence[int], class_names: Sequence[str],
               palette: Sequence[Sequence[int]] | None = None) -> Image.Image:
    """Adds to the right of `picture` a legend: one colour swatch and name per class, in the given order.

    Args:
        picture: H×W×3 uint8 RGB.
        classes: the class indices to list.
        class_names: one name per class (their number sets the palette).
        palette: one RGB colour per class; None: `class_palette`.

    Returns:
        The picture with the legend; taller than the picture when the list needs it (white below).
    """
    palette = _palette(len(class_names), palette)
    font = ImageFont.load_default()
    text_width = max((int(font.getlength(class_names[k])) for k in classes), default=0)
    legend_width = _LEGEND_SWATCH + text_width + 20
    height = max(picture.shape[0], _LEGEND_ROW * len(classes) + 8)
    canvas = Image.new("RGB", (picture.shape[1] + legend_width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, k in enumerate(classes):
        x, y = picture.shape[1] + 6, 4 + row * _LEGEND_ROW
        draw.rectangle([x, y + 2, x + _LEGEND_SWATCH, y + 2 + _LEGEND_SWATCH], fill=palette[k], outline=(0, 0, 0))
        draw.text((x + _LEGEND_SWATCH + 6, y + 2), class_names[k], fill=(0, 0, 0), font=font)
    return canvas


def draw_segmentation(
    image: np.ndarray, class_map: np.ndarray, class_names: Sequence[str], alpha: float = 0.5,
    palette: Sequence[Sequence[int]] | None = None,
) -> Image.Image:
    """Blends a colour-coded class map over the image and adds a legend of the classes present.

    Args:
        image: H×W×3 uint8 RGB.
        class_map: H×W integer class indices (0..K-1).
        class_names: one name per class.
        alpha: opacity of the class colours.
        palette: one RGB colour per class (the dataset's); None: `class_palette`.

    Returns:
        The image with the class map, and to its right the legend (classes by area, largest first).
    """
    overlay = blend_class_map(image, class_map, len(class_names), alpha, palette=palette)
    return add_legend(overlay, classes_by_area(class_map), class_names, palette)
