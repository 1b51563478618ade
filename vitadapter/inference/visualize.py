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


def draw_detections(
    image: np.ndarray,
    prediction: Mapping[str, Tensor],
    class_names: Sequence[str],
    score_threshold: float = 0.5,
    alpha: float = 0.5,
) -> np.ndarray:
    """Draws the detections scoring at least `score_threshold`: masks, boxes and "class score" labels.

    Args:
        image: H×W×3 uint8 RGB (the original image).
        prediction: `boxes` (N×4 xyxy, original pixels), `scores`, `labels` (0..K-1) and optionally
            `masks` (N×H×W bool).
        class_names: one name per label.
        score_threshold: detections below this score are not drawn.
        alpha: mask opacity.

    Returns:
        The drawn H×W×3 uint8 RGB image.
    """
    keep = prediction["scores"].detach().cpu() >= score_threshold
    boxes = prediction["boxes"].detach().cpu()[keep]
    labels = prediction["labels"].detach().cpu()[keep].tolist()
    scores = prediction["scores"].detach().cpu()[keep].tolist()
    palette = class_palette(len(class_names))
    colors = [palette[k] for k in labels]
    canvas = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if prediction.get("masks") is not None and len(labels):
        masks = prediction["masks"].detach().cpu()[keep].bool()
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colors)
    if len(labels):
        captions = [f"{class_names[k]} {s:.2f}" for k, s in zip(labels, scores)]
        canvas = draw_bounding_boxes(canvas, boxes, labels=captions, colors=colors, width=2)
    return canvas.permute(1, 2, 0).numpy()


def draw_segmentation(
    image: np.ndarray, class_map: np.ndarray, class_names: Sequence[str], alpha: float = 0.5
) -> Image.Image:
    """Blends a colour-coded class map over the image and adds a legend of the classes present.

    Args:
        image: H×W×3 uint8 RGB.
        class_map: H×W integer class indices (0..K-1).
        class_names: one name per class.
        alpha: opacity of the class colours.

    Returns:
        The image with the class map, and to its right the legend (classes by area, largest first).
    """
    if class_map.shape != image.shape[:2]:
        raise ValueError(f"class map {class_map.shape} and image {image.shape[:2]} differ in size")
    palette = np.array(class_palette(len(class_names)), dtype=np.float32).reshape(-1, 3)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * palette[class_map]
    overlay = Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
    ids, counts = np.unique(class_map, return_counts=True)
    present = [int(i) for i in ids[np.argsort(-counts, kind="stable")]]
    font = ImageFont.load_default()
    text_width = max((int(font.getlength(class_names[k])) for k in present), default=0)
    legend_width = _LEGEND_SWATCH + text_width + 20
    height = max(overlay.height, _LEGEND_ROW * len(present) + 8)
    canvas = Image.new("RGB", (overlay.width + legend_width, height), (255, 255, 255))
    canvas.paste(overlay, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, k in enumerate(present):
        x, y = overlay.width + 6, 4 + row * _LEGEND_ROW
        color = tuple(int(c) for c in palette[k])
        draw.rectangle([x, y + 2, x + _LEGEND_SWATCH, y + 2 + _LEGEND_SWATCH], fill=color, outline=(0, 0, 0))
        draw.text((x + _LEGEND_SWATCH + 6, y + 2), class_names[k], fill=(0, 0, 0), font=font)
    return canvas
