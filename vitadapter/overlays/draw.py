"""Prediction overlays: one picture per image with the image, its ground truth and the prediction side by side
(segmentation, detection, panoptic, depth).

The inputs are what validation has at hand: the datamodule's normalised (and resized) image, the
ground truth and the task's prediction. The picture is drawn at the original image's size, scaled down
so that its longer side is at most `max_size`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from vitadapter.inference.visualize import (
    PANEL_GAP,
    VOID_CLASS,
    add_depth_colorbar,
    add_legend,
    blend_class_map,
    blend_panoptic,
    classes_by_area,
    colorize_depth,
    draw_detections,
    panoptic_class_map,
    side_by_side,
)

def display_size(height: int, width: int, max_size: int) -> tuple[tuple[int, int], float]:
    """The drawing size of an image: the original, scaled down to a longer side of `max_size`.

    Args:
        height: original height.
        width: original width.
        max_size: the longest side drawn.

    Returns:
        ((height, width), factor), where drawn = original × factor (1 when the image is small enough).
    """
    factor = min(1.0, max_size / max(height, width))
    return (max(1, round(height * factor)), max(1, round(width * factor))), factor


def denormalize(image: Tensor, mean: Sequence[float], std: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """Undoes the datamodule's normalisation and resizes (bilinear) to `size`.

    Args:
        image: 3×h×w normalised image.
        mean: per-channel mean in 0..1 units.
        std: per-channel std in 0..1 units.
        size: (height, width) wanted.

    Returns:
        H×W×3 uint8 RGB.
    """
    pixels = image.detach().float().cpu()
    pixels = pixels * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    if tuple(pixels.shape[-2:]) != tuple(size):
        pixels = F.interpolate(pixels[None], size=size, mode="bilinear", align_corners=False)[0]
    return (pixels.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def _resize_nearest(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """N×h×w (or h×w) integer or bool maps resized to `size` by nearest neighbour, same dtype."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    resized = F.interpolate(maps.float().reshape(-1, 1, *maps.shape[-2:]), size=size, mode="nearest")
    return resized.reshape(*maps.shape[:-2], *size).to(maps.dtype)


def segmentation_overlay(
    image: Tensor,
    mask: Tensor,
    prediction: Tensor,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    ignore_index: int = 255,
    alpha: float = 0.5,
    max_size: int = 512,
    palette: Sequence[Sequence[int]] | None = None,
) -> Image.Image:
    """Image | ground-truth classes | predicted classes, then a legend of the classes in either map.

    Args:
        image: 3×h×w normalised image (h×w may differ from the label's size).
        mask: H×W ground-truth class indices at the original size; `ignore_index` is left uncoloured.
        prediction: H×W predicted class indices at the original size.
        class_names: one name per class.
        mean: normalisation mean (0..1 units).
        std: normalisation std (0..1 units).
        ignore_index: the unlabelled value of the ground truth.
        alpha: opacity of the class colours.
        max_size: longest side of each panel.
        palette: one RGB colour per class (the dataset's); None: `class_palette`.

    Returns:
        The picture: three panels of the display size (see `display_size`, `side_by_side`), then the legend.
    """
    size, _ = display_size(*mask.shape[-2:], max_size)
    rgb = denormalize(image, mean, std, size)
    truth = _resize_nearest(mask.detach().cpu(), size).numpy()
    predicted = _resize_nearest(prediction.detach().cpu(), size).numpy()
    num_classes = len(class_names)
    panels = [rgb, blend_class_map(rgb, truth, num_classes, alpha, ignore_index, palette=palette),
              blend_class_map(rgb, predicted, num_classes, alpha, palette=palette)]
    return add_legend(side_by_side(panels), classes_by_area(truth, predicted, ignore_index=ignore_index), class_names,
                      palette)


def _scaled(detections: Mapping[str, Tensor], factor: float, size: tuple[int, int]) -> dict[str, Tensor]:
    """Boxes multiplied by `factor`, masks (if any) resized to `size`; other entries as they are."""
    out = {key: value.detach().cpu() for key, value in detections.items() if value is not None}
    out["boxes"] = out["boxes"].float() * factor
    if "masks" in out:
        out["masks"] = _resize_nearest(out["masks"].bool(), size)
    return out


def detection_overlay(
    image: Tensor,
    target: Mapping[str, Tensor],
    prediction: Mapping[str, Tensor],
    scale: float,
    orig_size: Sequence[int],
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    score_threshold: float = 0.5,
    alpha: float = 0.5,
    max_size: int = 512,
) -> Image.Image:
    """Image | ground-truth boxes (and masks) | predicted detections scoring at least `score_threshold`.

    Args:
        image: 3×h×w normalised image, the original rescaled by `scale`.
        target: `boxes` (xyxy in the rescaled image's pixels), `labels` (0..K-1), optionally `masks`.
        prediction: `boxes` (xyxy in original pixels), `scores`, `labels`, optionally `masks` (N×H×W).
        scale: the datamodule's rescale factor (rescaled = original × scale).
        orig_size: (height, width) of the original image.
        class_names: one name per label.
        mean: normalisation mean (0..1 units).
        std: normalisation std (0..1 units).
        score_threshold: predictions below it are not drawn.
        alpha: mask opacity.
        max_size: longest side of each panel.

    Returns:
        The picture: three panels of the display size (see `display_size`) side by side (`side_by_side`).
    """
    size, factor = display_size(int(orig_size[0]), int(orig_size[1]), max_size)
    rgb = denormalize(image, mean, std, size)
    truth = draw_detections(rgb, _scaled(target, factor / scale, size), class_names, alpha=alpha)
    shown = prediction["scores"] >= score_threshold  # only those are resized and drawn
    shown_predictions = {key: value[shown] for key, value in prediction.items() if value is not None}
    predicted = draw_detections(rgb, _scaled(shown_predictions, factor, size), class_names, score_threshold, alpha)
    return Image.fromarray(side_by_side([rgb, truth, predicted]))


def depth_overlay(
    image: Tensor,
    depth: Tensor,
    prediction: Tensor,
    min_depth: float,
    max_depth: float,
    mean: Sequence[float],
    std: Sequence[float],
    max_size: int = 512,
) -> Image.Image:
    """Image | ground-truth depth | predicted depth on one colour scale (the task's range), then its colour bar.

    Args:
        image: 3×h×w normalised image (h×w may differ from the ground truth's size).
        depth: H×W ground-truth depths in metres at the original size; 0 (no depth) is drawn black.
        prediction: H×W predicted depths in metres at the original size.
        min_depth: the depth of the colour map's first colour (the task's `min_depth`).
        max_depth: the depth of its last colour (the task's `max_depth`).
        mean: normalisation mean (0..1 units).
        std: normalisation std (0..1 units).
        max_size: longest side of each panel.

    Returns:
        The picture: three panels of the display size (see `display_size`, `side_by_side`), then the colour bar
        (`add_depth_colorbar`).
    """
    size, _ = display_size(*depth.shape[-2:], max_size)
    rgb = denormalize(image, mean, std, size)
    # nearest for the ground truth, so that no invalid 0 is averaged into a depth; bilinear for the prediction
    truth = _resize_nearest(depth.detach().float().cpu(), size).numpy()
    predicted = prediction.detach().float().cpu()
    if tuple(predicted.shape[-2:]) != tuple(size):
        predicted = F.interpolate(predicted[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    panels = [rgb, colorize_depth(truth, min_depth, max_depth), colorize_depth(predicted.numpy(), min_depth, max_depth)]
    return add_depth_colorbar(side_by_side(panels), min_depth, max_depth)


def panoptic_overlay(
    image: Tensor,
    truth: Tensor,
    truth_segments: Sequence[Mapping[str, int]],
    prediction: Tensor,
    predicted_segments: Sequence[Mapping[str, int]],
    class_names: Sequence[str],
    isthing: Sequence[bool],
    mean: Sequence[float],
    std: Sequence[float],
    alpha: float = 0.5,
    max_size: int = 512,
    palette: Sequence[Sequence[int]] | None = None,
) -> Image.Image:
    """Image | ground-truth segments | predicted segments (class colours, thing outlines), then a legend of the
    classes in either.

    Args:
        image: 3×h×w normalised image (h×w may differ from the segment maps' size).
        truth: H×W ground-truth segment ids at the original size (0: void, left as the image).
        truth_segments: `{"id", "category_id"}` per ground-truth segment, classes 0..K-1.
        prediction: H×W predicted segment ids at the original size.
        predicted_segments: `{"id", "category_id"}` per predicted segment.
        class_names: one name per class.
        isthing: per class, whether it is a thing.
        mean: normalisation mean (0..1 units).
        std: normalisation std (0..1 units).
        alpha: opacity of the class colours.
        max_size: longest side of each panel.
        palette: one RGB colour per class (the dataset's); None: `class_palette`.

    Returns:
        The picture: three panels of the display size (see `display_size`, `side_by_side`), then the legend.
    """
    size, _ = display_size(*truth.shape[-2:], max_size)
    rgb = denormalize(image, mean, std, size)
    maps = [_resize_nearest(ids.detach().cpu(), size).numpy() for ids in (truth, prediction)]
    panels = [rgb, *(blend_panoptic(rgb, ids, segments, isthing, alpha, palette)
                     for ids, segments in zip(maps, (truth_segments, predicted_segments)))]
    classes = classes_by_area(*(panoptic_class_map(ids, segments)
                                for ids, segments in zip(maps, (truth_segments, predicted_segments))),
                              ignore_index=VOID_CLASS)
    return add_legend(side_by_side(panels), classes, class_names, palette)
