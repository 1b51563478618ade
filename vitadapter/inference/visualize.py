"""Drawing predictions on images: detections (boxes, masks, class names), segmentation class maps, panoptic
segmentations (class colours, thing outlines) and depth maps.

Depth is coloured with matplotlib's viridis over the task's depth range (see `colorize_depth`), beside a colour
bar in metres (`add_depth_colorbar`).
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

PANEL_GAP = 4  # white columns between the panels of a picture
_LEGEND_ROW = 18  # pixels per legend entry
_LEGEND_SWATCH = 12


def side_by_side(panels: Sequence[np.ndarray]) -> np.ndarray:
    """H×W×3 uint8 panels of one height in a row, `PANEL_GAP` white columns apart."""
    gap = np.full((panels[0].shape[0], PANEL_GAP, 3), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


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


PANOPTIC_OUTLINE = (255, 255, 255)  # instance outlines of things
VOID_CLASS = -1  # class-map value of pixels in no segment


def panoptic_class_map(panoptic: np.ndarray, segments: Sequence[Mapping[str, int]]) -> np.ndarray:
    """H×W class index of each pixel of a segment-id map (`VOID_CLASS` where no listed segment is)."""
    classes = np.full(panoptic.shape, VOID_CLASS, dtype=np.int64)
    for segment in segments:
        classes[panoptic == segment["id"]] = int(segment["category_id"])
    return classes


def thing_outlines(panoptic: np.ndarray, segments: Sequence[Mapping[str, int]], isthing: Sequence[bool]) -> np.ndarray:
    """H×W bool: the pixels of thing segments that have a 4-neighbour outside their segment (the image edge is not
    an outline)."""
    things = [s["id"] for s in segments if isthing[int(s["category_id"])]]
    padded = np.pad(panoptic, 1, mode="edge")
    border = ((padded[1:-1, :-2] != panoptic) | (padded[1:-1, 2:] != panoptic)
              | (padded[:-2, 1:-1] != panoptic) | (padded[2:, 1:-1] != panoptic))
    return border & np.isin(panoptic, things)


def blend_panoptic(image: np.ndarray, panoptic: np.ndarray, segments: Sequence[Mapping[str, int]],
                   isthing: Sequence[bool], alpha: float = 0.5,
                   palette: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Blends each segment's class colour over the image and outlines every thing (`PANOPTIC_OUTLINE`), so that
    touching instances of one class stay apart; void pixels are left as the image.

    Args:
        image: H×W×3 uint8 RGB.
        panoptic: H×W segment ids (0: void).
        segments: `{"id", "category_id"}` per segment, classes 0..K-1.
        isthing: per class, whether it is a thing (K = its length).
        alpha: opacity of the class colours.
        palette: one RGB colour per class; None: `class_palette`.

    Returns:
        The H×W×3 uint8 RGB picture.
    """
    if panoptic.shape != image.shape[:2]:
        raise ValueError(f"segment map {panoptic.shape} and image {image.shape[:2]} differ in size")
    blended = blend_class_map(image, panoptic_class_map(panoptic, segments), len(isthing), alpha, VOID_CLASS, palette)
    blended[thing_outlines(panoptic, segments, isthing)] = PANOPTIC_OUTLINE
    return blended


def draw_panoptic(image: np.ndarray, panoptic: np.ndarray, segments: Sequence[Mapping[str, int]],
                  class_names: Sequence[str], isthing: Sequence[bool], alpha: float = 0.5,
                  palette: Sequence[Sequence[int]] | None = None) -> Image.Image:
    """A panoptic segmentation over its image (`blend_panoptic`) with a legend of the classes present.

    Args:
        image: H×W×3 uint8 RGB.
        panoptic: H×W segment ids (0: void).
        segments: `{"id", "category_id"}` per segment, classes 0..K-1.
        class_names: one name per class.
        isthing: per class, whether it is a thing.
        alpha: opacity of the class colours.
        palette: one RGB colour per class (the dataset's); None: `class_palette`.

    Returns:
        The picture, and to its right the legend (classes by area, largest first).
    """
    overlay = blend_panoptic(image, panoptic, segments, isthing, alpha, palette)
    classes = classes_by_area(panoptic_class_map(panoptic, segments), ignore_index=VOID_CLASS)
    return add_legend(overlay, classes, class_names, palette)


DEPTH_COLORMAP = "viridis"
"""Perceptually uniform (equal steps in depth look like equal steps in colour) and readable with colour-blindness;
unlike magma or inferno it starts at dark purple rather than black, so invalid pixels (black) stay apart from the
nearest depths."""
INVALID_DEPTH_COLOR = (0, 0, 0)  # ground-truth pixels without a depth (0 in the dataset's files)
COLORBAR_GAP = 6  # white columns between a picture and its colour bar
COLORBAR_WIDTH = 16
_COLORBAR_TICKS = 5


def depth_colors(colormap: str = DEPTH_COLORMAP, levels: int = 256) -> np.ndarray:
    """The colour map sampled at `levels` evenly spaced points: levels×3 uint8 RGB, nearest depth first."""
    rgba = colormaps[colormap](np.linspace(0.0, 1.0, levels))
    return (rgba[:, :3] * 255 + 0.5).astype(np.uint8)


def colorize_depth(depth: np.ndarray, min_depth: float, max_depth: float,
                   colormap: str = DEPTH_COLORMAP) -> np.ndarray:
    """Colours a depth map on a fixed scale: `min_depth` -> the colour map's first colour, `max_depth` -> its last.

    Depths outside the range take the end colours; pixels without a depth (0, negative or not finite: a
    ground truth's invalid pixels) are `INVALID_DEPTH_COLOR`.

    Args:
        depth: H×W depths in metres.
        min_depth: the depth of the first colour.
        max_depth: the depth of the last colour.
        colormap: a matplotlib colour map name.

    Returns:
        H×W×3 uint8 RGB.
    """
    if not max_depth > min_depth:
        raise ValueError(f"need min_depth < max_depth to colour depths, got {min_depth} and {max_depth}")
    depth = np.asarray(depth, dtype=np.float64)
    colors = depth_colors(colormap)
    valid = np.isfinite(depth) & (depth > 0)
    position = np.clip((np.where(valid, depth, min_depth) - min_depth) / (max_depth - min_depth), 0.0, 1.0)
    picture = colors[np.rint(position * (len(colors) - 1)).astype(np.int64)]
    picture[~valid] = INVALID_DEPTH_COLOR
    return picture


def _tick_label(value: float) -> str:
    return f"{value:.3g} m"


def add_depth_colorbar(picture: np.ndarray, min_depth: float, max_depth: float,
                       colormap: str = DEPTH_COLORMAP) -> Image.Image:
    """Adds to the right of `picture` a vertical colour bar of `colorize_depth`'s scale, labelled in metres.

    The bar starts `COLORBAR_GAP` columns right of the picture and is `COLORBAR_WIDTH` wide: `max_depth`'s colour
    at its top, `min_depth`'s at its bottom, with up to five evenly spaced ticks (two on short pictures).

    Args:
        picture: H×W×3 uint8 RGB.
        min_depth: the depth of the colour map's first colour (metres).
        max_depth: the depth of its last colour.
        colormap: a matplotlib colour map name.

    Returns:
        The picture with the colour bar, as tall as the picture.
    """
    height, width = picture.shape[:2]
    font = ImageFont.load_default()
    margin = min(6, height // 4)  # room for the end labels, which are centred on the bar's ends
    bar_height = max(height - 2 * margin, 2)
    ticks = max(2, min(_COLORBAR_TICKS, bar_height // 16 + 1))
    values = np.linspace(max_depth, min_depth, ticks)
    text_width = max(int(font.getlength(_tick_label(v))) for v in values)
    x0 = width + COLORBAR_GAP
    canvas = Image.new("RGB", (x0 + COLORBAR_WIDTH + 4 + text_width + 6, max(height, bar_height)), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    colors = depth_colors(colormap)
    rows = np.rint(np.linspace(len(colors) - 1, 0, bar_height)).astype(np.int64)  # top: the farthest
    bar = np.repeat(colors[rows][:, None], COLORBAR_WIDTH, axis=1)
    canvas.paste(Image.fromarray(bar), (x0, margin))
    draw = ImageDraw.Draw(canvas)
    for value, y in zip(values, np.rint(np.linspace(margin, margin + bar_height - 1, ticks))):
        x = x0 + COLORBAR_WIDTH
        draw.line([(x, int(y)), (x + 2, int(y))], fill=(0, 0, 0))
        draw.text((x + 4, int(y)), _tick_label(value), fill=(0, 0, 0), font=font, anchor="lm")
    return canvas


def draw_depth(image: np.ndarray, depth: np.ndarray, min_depth: float, max_depth: float,
               colormap: str = DEPTH_COLORMAP) -> Image.Image:
    """The image beside its coloured depth map (`colorize_depth`) and the colour bar in metres.

    Args:
        image: H×W×3 uint8 RGB.
        depth: H×W depths in metres.
        min_depth: the depth of the colour map's first colour (predict.py: the task's range).
        max_depth: the depth of its last colour.
        colormap: a matplotlib colour map name.

    Returns:
        image | `PANEL_GAP` white columns | coloured depth | colour bar.
    """
    if depth.shape != image.shape[:2]:
        raise ValueError(f"depth map {depth.shape} and image {image.shape[:2]} differ in size")
    panels = side_by_side([image, colorize_depth(depth, min_depth, max_depth, colormap)])
    return add_depth_colorbar(panels, min_depth, max_depth, colormap)
