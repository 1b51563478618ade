"""Random scenes of simple shapes for demos and tests that must learn in minutes without pretrained weights.

The eight classes differ in outline or texture, never in colour: every object takes random colours,
so a model has to look at geometry. Sizes and texture periods scale with the image (objects span
about 30-64 px and stripes/checkers repeat every 6-10 px on a 128 px image, i.e. coarse enough to
show up in 8 px ViT patches). Backgrounds are smooth random gradients with low-frequency blotches
and pixel noise. Objects are painted back to front and may hide part of earlier ones, but every
object keeps at least half of its area visible; the instance masks are the visible parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "plus",
    "ring",
    "striped_rectangle",
    "checkered_rectangle",
)

# Bump whenever render_scene draws differently: the writers record it, so sets written by an older
# generator are rewritten instead of reused.
SCENE_VERSION = 2
_REFERENCE_SIZE = 128  # sizes below are in pixels of a 128 px image and scale with the image
_MIN_EXTENT, _MAX_EXTENT = 30.0, 64.0
_MIN_TEXTURED_EXTENT = 30.0  # textured rectangles need room for at least ~2 periods
_MIN_PERIOD, _MAX_PERIOD = 6.0, 10.0
_MIN_VISIBLE_FRACTION = 0.5
_MIN_COLOUR_DISTANCE = 80.0
_PLACEMENT_TRIES = 10
STYLES = ("flat", "textured")
_SUBPIXEL_SHIFT = 4  # cv2 drawing with 4 fractional bits for smooth sub-pixel outlines


@dataclass
class Instance:
    """One object of a scene.

    Attributes:
        class_index: 0-based index into ``SHAPE_CLASSES``.
        mask: Boolean H×W mask of the part that is visible after occlusion.
    """

    class_index: int
    mask: np.ndarray


@dataclass
class Scene:
    """A rendered image and its objects.

    Attributes:
        image: H×W×3 uint8 RGB image.
        instances: Objects in painting order (back to front); their masks do not overlap.
    """

    image: np.ndarray
    instances: list[Instance] = field(default_factory=list)

    def semantic_mask(self, offset: int = 1, background: int = 0) -> np.ndarray:
        """Return an H×W uint8 label map with ``class_index + offset`` on objects.

        Args:
            offset: Value added to each class index (1 gives the ADE20K convention, 0 = background).
            background: Value of pixels that belong to no object.

        Returns:
            The label map.
        """
        labels = np.full(self.image.shape[:2], background, dtype=np.uint8)
        for inst in self.instances:
            labels[inst.mask] = inst.class_index + offset
        return labels


def _image_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        h = w = int(image_size)
    else:
        h, w = (int(v) for v in image_size)
    if h < 16 or w < 16:
        raise ValueError(f"image_size must be at least 16 px per side, got {image_size!r}")
    return h, w


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Linear gradient between two random colours plus low-frequency colour blotches (float32 H×W×3)."""
    c0, c1 = rng.uniform(0.0, 255.0, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = c0 + (c1 - c0) * t[..., None]
    grid = rng.normal(0.0, 25.0, size=(4, 4, 3)).astype(np.float32)
    image += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return image


def _polygon_mask(h: int, w: int, points: np.ndarray) -> np.ndarray:
    canvas = np.zeros((h, w), dtype=np.uint8)
    pts = np.round(points * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)
    return canvas.view(bool)


def _disc_mask(h: int, w: int, cx: float, cy: float, radius: float) -> np.ndarray:
    canvas = np.zeros((h, w), dtype=np.uint8)
    scale = 1 << _SUBPIXEL_SHIFT
    centre = (round(cx * scale), round(cy * scale))
    cv2.circle(canvas, centre, round(radius * scale), 1, -1, lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)
    return canvas.view(bool)


def _rotated(points: np.ndarray, angle: float, cx: float, cy: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]], dtype=np.float64)
    return points @ rot.T + np.array([cx, cy])


def _regular_star(n_points: int, outer: float, inner: float) -> np.ndarray:
    angles = np.arange(2 * n_points) * (math.pi / n_points) - math.pi / 2
    radii = np.where(np.arange(2 * n_points) % 2 == 0, outer, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _shape_mask(name: str, rng: np.random.Generator, h: int, w: int, cx: float, cy: float, extent: float) -> np.ndarray:
    """Boolean mask of one shape of roughly ``extent`` pixels across, centred at (cx, cy)."""
    r = extent / 2.0
    if name == "circle":
        return _disc_mask(h, w, cx, cy, r)
    if name == "ring":
        inner = r * rng.uniform(0.45, 0.62)
        return _disc_mask(h, w, cx, cy, r) & ~_disc_mask(h, w, cx, cy, inner)
    if name == "square":
        a = 0.8 * r
        pts = np.array([[-a, -a], [a, -a], [a, a], [-a, a]])
        return _polygon_mask(h, w, _rotated(pts, rng.uniform(-0.5, 0.5), cx, cy))
    if name == "triangle":
        angles = np.array([0.0, 2.0, 4.0]) * (math.pi / 3) - math.pi / 2
        pts = np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)
        return _polygon_mask(h, w, _rotated(pts, rng.uniform(0.0, 2.0 * math.pi), cx, cy))
    if name == "star":
        pts = _regular_star(5, r, r * 0.45)
        return _polygon_mask(h, w, _rotated(pts, rng.uniform(0.0, 2.0 * math.pi), cx, cy))
    if name == "plus":
        a = max(0.3 * r, 2.0)
        pts = np.array(
            [[-a, -r], [a, -r], [a, -a], [r, -a], [r, a], [a, a], [a, r], [-a, r], [-a, a], [-r, a], [-r, -a], [-a, -a]]
        )
        return _polygon_mask(h, w, _rotated(pts, rng.uniform(-0.35, 0.35), cx, cy))
    if name in ("striped_rectangle", "checkered_rectangle"):
        half_long, half_short = r, r * rng.uniform(0.55, 0.8)
        hw, hh = (half_long, half_short) if rng.random() < 0.5 else (half_short, half_long)
        pts = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]]) + np.array([cx, cy])
        return _polygon_mask(h, w, pts)
    raise ValueError(f"unknown shape {name!r}; expected one of {SHAPE_CLASSES}")


def _contrasting_colour(rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """A random RGB colour at least ``_MIN_COLOUR_DISTANCE`` away from ``reference`` (best of a few draws)."""
    best, best_dist = reference, -1.0
    for _ in range(8):
        colour = rng.uniform(0.0, 255.0, size=3).astype(np.float32)
        dist = float(np.linalg.norm(colour - reference))
        if dist >= _MIN_COLOUR_DISTANCE:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


def _paint(
    name: str, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, scale: float, cx: float, cy: float
) -> None:
    """Paint the object's pixels in place: one colour, or two alternating colours for textured classes."""
    h, w = mask.shape
    under = image[min(max(int(cy), 0), h - 1), min(max(int(cx), 0), w - 1)]
    colour = _contrasting_colour(rng, under)
    ys, xs = np.nonzero(mask)
    if name not in ("striped_rectangle", "checkered_rectangle"):
        image[ys, xs] = colour
        return
    other = _contrasting_colour(rng, colour)
    period = rng.uniform(_MIN_PERIOD, _MAX_PERIOD) * scale
    phase = rng.uniform(0.0, period)
    if name == "striped_rectangle":
        angle = rng.choice([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
        coord = xs * math.cos(angle) + ys * math.sin(angle) + phase
        first = np.mod(coord, period) < period / 2
    else:
        cell = period / 2
        first = (np.floor((xs + phase) / cell) + np.floor((ys + phase) / cell)) % 2 == 0
    image[ys, xs] = np.where(first[:, None], colour, other)


def _restyle(rng: np.random.Generator, image: np.ndarray, objects: np.ndarray) -> None:
    """The "textured" style, in place: background colours inverted, and objects blended (up to 70 %) into a
    smooth random colour field (blotches ~1/4 of the image), so no object keeps a flat colour."""
    h, w = objects.shape
    image[~objects] = 255.0 - image[~objects]

    def smooth(low: float, high: float, channels: int) -> np.ndarray:
        grid = rng.uniform(low, high, size=(5, 5, channels)).astype(np.float32)
        return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)

    colours, weight = smooth(0.0, 255.0, 3), np.clip(smooth(0.0, 0.7, 1), 0.0, 0.7)
    image[objects] = ((1.0 - weight) * image + weight * colours)[objects]


def render_scene(rng: np.random.Generator, image_size: int | tuple[int, int], max_objects: int = 6,
                 style: str = "flat") -> Scene:
    """Render one random scene of shapes.

    Args:
        rng: Source of all randomness; the same generator state gives the same scene.
        image_size: Side length, or (height, width), in pixels.
        max_objects: Upper bound on the number of objects (at least one is always drawn).
        style: "flat" (objects in flat colours or their two-colour texture) or "textured" (the same shapes
            with inverted backgrounds and objects blended into a smooth random colour field: a shifted
            domain, as the transfer demo's target task).

    Returns:
        The scene: RGB image and the visible mask of each object.
    """
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    if style not in STYLES:
        raise ValueError(f"style={style!r}: choose from {list(STYLES)}")
    h, w = _image_hw(image_size)
    scale = min(h, w) / _REFERENCE_SIZE
    image = _background(rng, h, w)
    owner = np.zeros((h, w), dtype=np.int16)  # 0 = background, k = k-th placed object
    full_area: list[int] = []
    classes: list[int] = []

    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        name = SHAPE_CLASSES[cls]
        low = _MIN_TEXTURED_EXTENT if name.endswith("rectangle") else _MIN_EXTENT
        for _try in range(_PLACEMENT_TRIES):
            extent = rng.uniform(low, _MAX_EXTENT) * scale
            margin = 0.4 * extent  # the centre stays inside, most of the object too
            cx = rng.uniform(margin, max(w - margin, margin + 1))
            cy = rng.uniform(margin, max(h - margin, margin + 1))
            mask = _shape_mask(name, rng, h, w, cx, cy, extent)
            area = int(mask.sum())
            if area < 0.25 * extent * extent:
                continue
            if full_area:
                hidden = np.bincount(owner[mask], minlength=len(full_area) + 1)[1:]
                visible = np.bincount(owner.ravel(), minlength=len(full_area) + 1)[1:]
                if np.any(visible - hidden < _MIN_VISIBLE_FRACTION * np.asarray(full_area)):
                    continue
            break
        else:
            continue  # no acceptable placement: draw one object fewer
        _paint(name, rng, image, mask, scale, cx, cy)
        owner[mask] = len(full_area) + 1
        full_area.append(area)
        classes.append(cls)

    if not classes:  # cannot happen for the first object in practice, but never return an empty scene
        mask = _disc_mask(h, w, w / 2, h / 2, _MIN_EXTENT * scale / 2)
        _paint("circle", rng, image, mask, scale, w / 2, h / 2)
        owner[mask] = 1
        classes.append(SHAPE_CLASSES.index("circle"))

    if style == "textured":
        _restyle(rng, image, owner > 0)
    image += rng.normal(0.0, rng.uniform(3.0, 10.0), size=image.shape).astype(np.float32)
    rgb = np.clip(image, 0.0, 255.0).astype(np.uint8)
    instances = [Instance(class_index=c, mask=owner == k + 1) for k, c in enumerate(classes)]
    return Scene(image=rgb, instances=instances)
