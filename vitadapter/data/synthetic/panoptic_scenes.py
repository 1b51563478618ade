"""Random panoptic scenes: flat-coloured shapes (things) over regions of procedural textures (stuff).

Made for a CPU demo in which a mask-classification head on a tiny random ViT must learn panoptic segmentation
in minutes, so things and stuff differ plainly: every thing is one flat random colour (plus pixel noise) of a
distinct outline (circle, square, triangle, star, about 24-48 px on a 128 px image), every stuff region a
two-colour texture with a period of 8-12 px (stripes, checker, dots, speckle), coarse enough for 8 px ViT
patches, as the textured rectangles of ``shapes.py`` that the demo models learn. Colours are random, so the
classes are told apart by outline and texture alone.

The background is split into 1-3 stuff regions (warped Voronoi cells, one class each). Things may occlude
one another (each keeps at least half of its area visible) and are often placed touching an earlier thing;
some images have no thing. Quirks of the real data: void pixels (a band along some region borders, an
unlabelled blob), and now and then a crowd (a cluster of small shapes of one class, one segment with iscrowd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from vitadapter.data.synthetic.shapes import _contrasting_colour, _image_hw, _shape_mask

THING_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star")
STUFF_CLASSES: tuple[str, ...] = ("stripes", "checker", "dots", "speckle")
PANOPTIC_CLASSES: tuple[str, ...] = THING_CLASSES + STUFF_CLASSES  # the class index of a segment

# Bump whenever render_panoptic_scene draws differently: the writer records it, so older sets are rewritten.
PANOPTIC_SCENE_VERSION = 1
_REFERENCE_SIZE = 128  # sizes below are in pixels of a 128 px image and scale with the image
_THING_EXTENT = (24.0, 48.0)
_CROWD_MEMBER_EXTENT = (9.0, 14.0)
_CROWD_SPREAD = 12.0
_PERIOD = (8.0, 12.0)
_BORDER_WARP = 10.0
_VOID_BAND = 1.5  # half-width of a void band along a region border
_VOID_BLOB = (8.0, 14.0)
_TOUCH_PROBABILITY = 0.35
_MIN_VISIBLE_FRACTION = 0.5
_PLACEMENT_TRIES = 10


@dataclass
class PanopticSegment:
    """One segment of a scene.

    Attributes:
        class_index: Index into ``PANOPTIC_CLASSES`` (things first, then stuff).
        mask: Boolean H×W mask of its visible pixels.
        iscrowd: A crowd of things annotated as one segment.
    """

    class_index: int
    mask: np.ndarray
    iscrowd: bool = False


@dataclass
class PanopticScene:
    """A rendered image and its segments (disjoint; pixels in none are void)."""

    image: np.ndarray
    segments: list[PanopticSegment] = field(default_factory=list)


def _smooth_field(rng: np.random.Generator, h: int, w: int, amplitude: float, cells: int = 4) -> np.ndarray:
    grid = rng.uniform(-amplitude, amplitude, size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _texture(name: str, rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Boolean H×W pattern of a stuff class (True: its second colour)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(*_PERIOD) * scale
    phase_x, phase_y = rng.uniform(0.0, period, size=2)
    if name == "stripes":
        angle = rng.choice([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
        return np.mod(xs * math.cos(angle) + ys * math.sin(angle) + phase_x, period) < period / 2
    if name == "checker":
        cell = period / 2
        return (np.floor((xs + phase_x) / cell) + np.floor((ys + phase_y) / cell)) % 2 == 0
    if name == "dots":
        dx = np.mod(xs + phase_x, period) - period / 2
        dy = np.mod(ys + phase_y, period) - period / 2
        return dx * dx + dy * dy <= (0.28 * period) ** 2
    if name == "speckle":
        block = max(1, round(2 * scale))
        noise = rng.random((h // block + 1, w // block + 1)) < 0.5
        return np.repeat(np.repeat(noise, block, axis=0), block, axis=1)[:h, :w]
    raise ValueError(f"unknown stuff class {name!r}; expected one of {STUFF_CLASSES}")


def _stuff_regions(rng: np.random.Generator, h: int, w: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A warped Voronoi split into 1-3 regions: (H×W region index, H×W margin to the nearest other region)."""
    count = int(rng.integers(1, 4))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    seeds = rng.uniform(0.0, 1.0, size=(count, 2)) * np.array([w, h])
    distances = np.stack([np.hypot(xs - sx, ys - sy) + _smooth_field(rng, h, w, _BORDER_WARP * scale)
                          for sx, sy in seeds])
    ordered = np.sort(distances, axis=0)
    margin = ordered[1] - ordered[0] if count > 1 else np.full((h, w), np.inf, dtype=np.float32)
    return distances.argmin(axis=0), margin


def _paint_stuff(rng: np.random.Generator, image: np.ndarray, region: np.ndarray, name: str, scale: float) -> None:
    first = rng.uniform(0.0, 255.0, size=3).astype(np.float32)
    second = _contrasting_colour(rng, first)
    pattern = _texture(name, rng, *region.shape, scale)
    image[region] = np.where(pattern[region][:, None], second, first)


def _place(rng: np.random.Generator, name: str, h: int, w: int, extent: float, owner: np.ndarray,
           full_area: list[int], anchor: tuple[float, float, float] | None) -> tuple[np.ndarray, float, float] | None:
    """The mask and centre of a shape that leaves every earlier object at least half visible (None: no room).

    With an ``anchor`` (cx, cy, extent) the shape is placed touching or slightly overlapping that object.
    """
    for _ in range(_PLACEMENT_TRIES):
        if anchor is None:
            margin = 0.4 * extent
            cx, cy = rng.uniform(margin, max(w - margin, margin + 1)), rng.uniform(margin, max(h - margin, margin + 1))
        else:
            angle, reach = rng.uniform(0.0, 2 * math.pi), 0.5 * (anchor[2] + extent) * rng.uniform(0.75, 0.95)
            cx, cy = anchor[0] + reach * math.cos(angle), anchor[1] + reach * math.sin(angle)
        mask = _shape_mask(name, rng, h, w, cx, cy, extent)
        if mask.sum() < 0.25 * extent * extent:
            continue
        if full_area:
            hidden = np.bincount(owner[mask], minlength=len(full_area) + 1)[1:]
            visible = np.bincount(owner.ravel(), minlength=len(full_area) + 1)[1:]
            if np.any(visible - hidden < _MIN_VISIBLE_FRACTION * np.asarray(full_area)):
                continue
        return mask, cx, cy
    return None


def _crowd(rng: np.random.Generator, image: np.ndarray, h: int, w: int, scale: float) -> tuple[int, np.ndarray]:
    """Paints a cluster of 4-7 small shapes of one thing class; returns (class index, their union)."""
    cls = int(rng.integers(len(THING_CLASSES)))
    centre = rng.uniform(0.25, 0.75, size=2) * np.array([w, h])
    union = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(4, 8))):
        cx, cy = centre + rng.normal(0.0, _CROWD_SPREAD * scale, size=2)
        mask = _shape_mask(THING_CLASSES[cls], rng, h, w, cx, cy, rng.uniform(*_CROWD_MEMBER_EXTENT) * scale)
        image[mask] = _contrasting_colour(rng, image[mask].mean(axis=0) if mask.any() else image[0, 0])
        union |= mask
    return cls, union


def render_panoptic_scene(rng: np.random.Generator, image_size: int | tuple[int, int], max_things: int = 5,
                          empty_probability: float = 0.1, crowd_probability: float = 0.15,
                          void_probability: float = 0.5) -> PanopticScene:
    """Render one random panoptic scene (see the module docstring).

    Args:
        rng: Source of all randomness; the same generator state gives the same scene.
        image_size: Side length, or (height, width), in pixels (at least 16).
        max_things: Upper bound on the things (instances) of an image.
        empty_probability: Chance of an image without things (and without a crowd).
        crowd_probability: Chance of a crowd segment.
        void_probability: Chance of void bands along the region borders (and, independently at a third of it,
            of a void blob).

    Returns:
        The scene: RGB image and its disjoint segments.
    """
    if max_things < 0:
        raise ValueError(f"max_things must be >= 0, got {max_things}")
    h, w = _image_hw(image_size)
    scale = min(h, w) / _REFERENCE_SIZE
    image = np.zeros((h, w, 3), dtype=np.float32)
    regions, margin = _stuff_regions(rng, h, w, scale)
    stuff = rng.choice(len(STUFF_CLASSES), size=int(regions.max()) + 1, replace=False)
    for k, cls in enumerate(stuff):
        _paint_stuff(rng, image, regions == k, STUFF_CLASSES[cls], scale)
    void = margin < _VOID_BAND * scale if rng.random() < void_probability else np.zeros((h, w), dtype=bool)
    if rng.random() < void_probability / 3:
        centre, axes = rng.uniform(0.1, 0.9, size=2) * np.array([w, h]), rng.uniform(*_VOID_BLOB, size=2) * scale
        blob = np.zeros((h, w), dtype=np.uint8)
        cv2.ellipse(blob, (round(centre[0]), round(centre[1])), (round(axes[0]), round(axes[1])),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
        image[blob > 0] = 0.5 * image[blob > 0] + 0.5 * rng.uniform(0.0, 255.0, size=3)
        void |= blob > 0

    owner = np.zeros((h, w), dtype=np.int16)  # 0: stuff or void, k: the k-th thing (or crowd)
    things: list[tuple[int, bool]] = []  # (class index, iscrowd) per owner value
    full_area: list[int] = []
    placed: list[tuple[float, float, float]] = []
    empty = rng.random() < empty_probability
    if not empty and rng.random() < crowd_probability:
        cls, union = _crowd(rng, image, h, w, scale)
        if union.any():
            owner[union] = 1
            things.append((cls, True))
            full_area.append(int(union.sum()))
    for _ in range(0 if empty else int(rng.integers(1, max_things + 1)) if max_things else 0):
        cls = int(rng.integers(len(THING_CLASSES)))
        extent = rng.uniform(*_THING_EXTENT) * scale
        anchor = placed[int(rng.integers(len(placed)))] if placed and rng.random() < _TOUCH_PROBABILITY else None
        spot = _place(rng, THING_CLASSES[cls], h, w, extent, owner, full_area, anchor)
        if spot is None:
            continue
        mask, cx, cy = spot
        image[mask] = _contrasting_colour(rng, image[mask].mean(axis=0))
        owner[mask] = len(things) + 1
        things.append((cls, False))
        full_area.append(int(mask.sum()))
        placed.append((cx, cy, extent))

    image += rng.normal(0.0, rng.uniform(3.0, 8.0), size=image.shape).astype(np.float32)
    segments = []
    for k, cls in enumerate(stuff):
        mask = (regions == k) & ~void & (owner == 0)
        if mask.any():
            segments.append(PanopticSegment(len(THING_CLASSES) + int(cls), mask))
    for k, (cls, iscrowd) in enumerate(things):
        mask = owner == k + 1
        if mask.any():
            segments.append(PanopticSegment(cls, mask, iscrowd))
    return PanopticScene(image=np.clip(image, 0.0, 255.0).astype(np.uint8), segments=segments)
