"""Random scenes for pretraining a backbone here: shapes, textures, colours and backgrounds that no demo uses.

The upstream task must differ from the downstream demos, so that a demo on the pretrained backbone measures
adaptation, not memory. None of ``shapes.SHAPE_CLASSES`` (circle, square, triangle, star, plus, ring, striped and
checkered rectangles) is drawn here, nor their straight stripes and checkers; the 16 shapes, 8 textures and 8 colour
names below are new. Every pixel is labelled with one class: a background kind, or an object's
(shape, texture, colour) triple, 4 + 16 x 8 x 8 = 1028 classes. Textures are patterns in a darker or lighter shade of
the object's colour, so the colour class is the object's hue whatever its texture. Objects span 18-72 px on a 128 px
image (sizes scale with the image), at random places, angles and aspect ratios; later ones may hide up to 60 % of
earlier ones, and the labels are the visible parts.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from vitadapter.data.synthetic.shapes import _disc_mask, _image_hw, _polygon_mask

UPSTREAM_SHAPES: tuple[str, ...] = (
    "ellipse", "hexagon", "pentagon", "crescent", "heart", "arrow", "l_shape", "t_shape",
    "semicircle", "rhombus", "trapezoid", "teardrop", "hourglass", "lightning", "chevron", "blob",
)
UPSTREAM_TEXTURES: tuple[str, ...] = ("flat", "dots", "waves", "zigzag", "grid", "concentric", "speckle", "shaded")
# colour names and the hue (degrees) each is drawn around
UPSTREAM_COLOURS: tuple[tuple[str, float], ...] = (
    ("red", 0.0), ("orange", 30.0), ("yellow", 58.0), ("green", 120.0),
    ("cyan", 182.0), ("blue", 228.0), ("purple", 275.0), ("pink", 322.0),
)
UPSTREAM_BACKGROUNDS: tuple[str, ...] = ("gradient", "clouds", "speckle", "scribbles")

# Bump whenever render_upstream_scene draws differently: the writer records it, so older sets are rewritten.
UPSTREAM_SCENE_VERSION = 1
_REFERENCE_SIZE = 128  # sizes below are in pixels of a 128 px image and scale with the image
_MIN_EXTENT, _MAX_EXTENT = 18.0, 72.0
_MIN_PERIOD, _MAX_PERIOD = 5.0, 11.0
_MIN_VISIBLE_FRACTION = 0.4
_PLACEMENT_TRIES = 10
_HUE_JITTER = 10.0  # degrees either side of the named hue: colour bins stay apart


def upstream_class_names() -> list[str]:
    """Every class, in label order: the background kinds, then each (shape, texture, colour) triple."""
    objects = [f"{s}/{t}/{c}" for s in UPSTREAM_SHAPES for t in UPSTREAM_TEXTURES for c, _ in UPSTREAM_COLOURS]
    return [f"background/{b}" for b in UPSTREAM_BACKGROUNDS] + objects


def object_label(shape: int, texture: int, colour: int) -> int:
    """The label of an object pixel (after the background kinds)."""
    return len(UPSTREAM_BACKGROUNDS) + (shape * len(UPSTREAM_TEXTURES) + texture) * len(UPSTREAM_COLOURS) + colour


def label_factors(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Splits a label map into its factors; -1 where a factor does not apply.

    Args:
        labels: integer label map (any shape) of ``upstream_class_names()`` indices.

    Returns:
        ``background`` (background kind, -1 on objects), ``shape``, ``texture``, ``colour`` (-1 on the background).
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_bg = len(UPSTREAM_BACKGROUNDS)
    if labels.size and (labels.min() < 0 or labels.max() >= len(upstream_class_names())):
        raise ValueError(f"upstream labels must lie in [0, {len(upstream_class_names())}), got "
                         f"[{labels.min()}, {labels.max()}]")
    on_object = labels >= num_bg
    k = labels - num_bg
    per_shape = len(UPSTREAM_TEXTURES) * len(UPSTREAM_COLOURS)
    return {
        "background": np.where(on_object, -1, labels),
        "shape": np.where(on_object, k // per_shape, -1),
        "texture": np.where(on_object, (k // len(UPSTREAM_COLOURS)) % len(UPSTREAM_TEXTURES), -1),
        "colour": np.where(on_object, k % len(UPSTREAM_COLOURS), -1),
    }


@dataclass
class UpstreamScene:
    """A rendered image and its labels.

    Attributes:
        image: H×W×3 uint8 RGB image.
        labels: H×W uint16 map of ``upstream_class_names()`` indices.
    """

    image: np.ndarray
    labels: np.ndarray


def _regular_polygon(n: int) -> np.ndarray:
    angles = np.arange(n) * (2 * math.pi / n) - math.pi / 2
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _outline(name: str, rng: np.random.Generator) -> np.ndarray:
    """The outline of a polygonal shape in unit coordinates (about [-1, 1]^2), before rotation and scaling."""
    if name == "ellipse":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        return np.stack([np.cos(t), rng.uniform(0.4, 0.65) * np.sin(t)], axis=1)
    if name == "hexagon":
        return _regular_polygon(6)
    if name == "pentagon":
        return _regular_polygon(5)
    if name == "heart":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y + 2.5], axis=1) / 17.0
    if name == "arrow":
        w, h, neck = rng.uniform(0.18, 0.28), rng.uniform(0.55, 0.75), rng.uniform(0.0, 0.3)
        return np.array([[-1, -w], [neck, -w], [neck, -h], [1, 0], [neck, h], [neck, w], [-1, w]])
    if name == "l_shape":
        th = rng.uniform(0.6, 0.85)
        return np.array([[-1, -1], [-1 + th, -1], [-1 + th, 1 - th], [1, 1 - th], [1, 1], [-1, 1]])
    if name == "t_shape":
        th = rng.uniform(0.55, 0.8)
        return np.array([[-1, -1], [1, -1], [1, -1 + th], [th / 2, -1 + th], [th / 2, 1], [-th / 2, 1],
                         [-th / 2, -1 + th], [-1, -1 + th]])
    if name == "semicircle":
        t = np.linspace(0, math.pi, 25)
        return np.stack([np.cos(t), np.sin(t) - 0.42], axis=1)
    if name == "rhombus":
        a = rng.uniform(0.42, 0.58)
        return np.array([[0, -1], [a, 0], [0, 1], [-a, 0]])
    if name == "trapezoid":
        b = rng.uniform(0.25, 0.55)
        return np.array([[-1, 0.6], [1, 0.6], [b, -0.6], [-b, -0.6]])
    if name == "teardrop":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        return np.stack([np.cos(t), 0.9 * np.sin(t) * np.sin(t / 2) ** 1.6], axis=1)
    if name == "hourglass":
        w = rng.uniform(0.1, 0.25)
        return np.array([[-0.8, -1], [0.8, -1], [w, 0], [0.8, 1], [-0.8, 1], [-w, 0]])
    if name == "lightning":
        return np.array([[-0.25, -1], [0.5, -1], [0.15, -0.2], [0.55, -0.2], [-0.45, 1], [-0.08, 0.12],
                         [-0.5, 0.12]])
    if name == "chevron":
        th = rng.uniform(0.45, 0.7)
        return np.array([[-1, -0.5], [0, 0.5 - th], [1, -0.5], [1, -0.5 + th], [0, 0.5], [-1, -0.5 + th]])
    if name == "blob":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        radius = 1.0 + sum(rng.uniform(-0.22, 0.22) * np.cos(k * t + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4))
        radius = radius / radius.max()
        return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
    raise ValueError(f"unknown upstream shape {name!r}; expected one of {UPSTREAM_SHAPES}")


def _object_mask(name: str, rng: np.random.Generator, h: int, w: int, cx: float, cy: float,
                 extent: float) -> np.ndarray:
    """Boolean mask of one shape of about ``extent`` pixels across, centred at (cx, cy), randomly turned."""
    r = extent / 2.0
    angle = rng.uniform(0.0, 2.0 * math.pi)
    if name == "crescent":
        offset, inner = rng.uniform(0.35, 0.55) * r, rng.uniform(0.8, 0.95) * r
        ox, oy = offset * math.cos(angle), offset * math.sin(angle)
        return _disc_mask(h, w, cx, cy, r) & ~_disc_mask(h, w, cx + ox, cy + oy, inner)
    points = _outline(name, rng) * r * np.array([rng.uniform(0.85, 1.15), 1.0])
    c, s = math.cos(angle), math.sin(angle)
    return _polygon_mask(h, w, points @ np.array([[c, s], [-s, c]]) + np.array([cx, cy]))


def _texture(name: str, rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, cx: float, cy: float,
             scale: float) -> np.ndarray:
    """The texture's pattern in [0, 1] at pixels (ys, xs) of an object centred at (cx, cy)."""
    angle = rng.uniform(0.0, 2.0 * math.pi)
    u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
    v = -(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)
    period = rng.uniform(_MIN_PERIOD, _MAX_PERIOD) * scale
    if name == "flat":
        return np.zeros(u.shape)
    if name == "dots":
        du, dv = (u / period) % 1 - 0.5, (v / period) % 1 - 0.5
        return (du * du + dv * dv < rng.uniform(0.22, 0.32) ** 2).astype(np.float64)
    if name == "waves":  # bands that bend along a sine: not the demos' straight stripes
        bend = rng.uniform(0.35, 0.6) * period * np.sin(2 * math.pi * v / (rng.uniform(2.0, 3.0) * period))
        return (((u + bend) / period) % 1 < 0.5).astype(np.float64)
    if name == "zigzag":
        wavelength = rng.uniform(1.5, 2.5) * period
        tri = np.abs((v / wavelength) % 1 - 0.5) * 2  # triangle wave in [0, 1]
        return (((u + 0.6 * period * tri) / period) % 1 < 0.5).astype(np.float64)
    if name == "grid":  # thin lines both ways, not the demos' checkers
        line = max(1.2, 0.18 * period)
        return ((u % period < line) | (v % period < line)).astype(np.float64)
    if name == "concentric":
        return ((np.hypot(u, v) / period) % 1 < 0.5).astype(np.float64)
    if name == "speckle":
        return rng.uniform(0.0, 1.0, size=u.shape)
    if name == "shaded":
        return (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    raise ValueError(f"unknown upstream texture {name!r}; expected one of {UPSTREAM_TEXTURES}")


def _object_colour(rng: np.random.Generator, hue: float, under: np.ndarray) -> np.ndarray:
    """An RGB colour of the named hue, as bright or dark as keeps it apart from ``under`` (the background there)."""
    h = ((hue + rng.uniform(-_HUE_JITTER, _HUE_JITTER)) % 360.0) / 360.0
    saturation = rng.uniform(0.6, 1.0)
    candidates = [np.array(colorsys.hsv_to_rgb(h, saturation, value)) * 255.0 for value in rng.uniform(0.45, 1.0, 4)]
    return max(candidates, key=lambda colour: float(np.linalg.norm(colour - under)))


def _background(kind: str, rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """A float H×W×3 background of the given kind."""

    def smooth(cells: int) -> np.ndarray:
        grid = rng.normal(0.0, 1.0, size=(cells, cells, 3)).astype(np.float32)
        return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)

    base = rng.uniform(20.0, 235.0, size=3).astype(np.float32)
    if kind == "gradient":
        other = rng.uniform(20.0, 235.0, size=3).astype(np.float32)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xs * math.cos(angle) + ys * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return base + (other - base) * t[..., None]
    if kind == "clouds":
        return base + 40.0 * smooth(4) + 25.0 * smooth(9) + 12.0 * smooth(17)
    if kind == "speckle":
        return base + rng.normal(0.0, rng.uniform(18.0, 35.0), size=(h, w, 3)).astype(np.float32)
    if kind == "scribbles":  # thin curves that belong to no object
        image = np.empty((h, w, 3), np.float32)
        image[:] = base
        for _ in range(int(rng.integers(3, 9))):
            t = np.linspace(0.0, 1.0, 24)[:, None]
            ends = rng.uniform(0, [w, h], size=(3, 2))
            curve = (1 - t) ** 2 * ends[0] + 2 * t * (1 - t) * ends[1] + t**2 * ends[2]
            thickness = max(1, round(rng.uniform(1.0, 2.5) * scale))
            colour = tuple(float(c) for c in rng.uniform(0.0, 255.0, size=3))
            cv2.polylines(image, [np.round(curve).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)
        return image
    raise ValueError(f"unknown upstream background {kind!r}; expected one of {UPSTREAM_BACKGROUNDS}")


def _hides_too_much(owner: np.ndarray, mask: np.ndarray, areas: list[int]) -> bool:
    """Whether painting ``mask`` over ``owner`` (0 = background, k = k-th object) would leave an earlier object less
    than ``_MIN_VISIBLE_FRACTION`` of its area."""
    if not areas:
        return False
    bins = len(areas) + 1
    left = np.bincount(owner.ravel(), minlength=bins) - np.bincount(owner[mask], minlength=bins)
    return bool(np.any(left[1:] < _MIN_VISIBLE_FRACTION * np.asarray(areas)))


def _place(name: str, rng: np.random.Generator, owner: np.ndarray, areas: list[int],
           scale: float) -> tuple[np.ndarray, float, float] | None:
    """A mask of shape ``name`` at a random place and size that is mostly inside the image and hides no earlier object
    too much, with its centre; None after ``_PLACEMENT_TRIES`` failures."""
    h, w = owner.shape
    for _ in range(_PLACEMENT_TRIES):
        extent = rng.uniform(_MIN_EXTENT, _MAX_EXTENT) * scale
        cx, cy = rng.uniform(0.0, w), rng.uniform(0.0, h)
        mask = _object_mask(name, rng, h, w, cx, cy, extent)
        if mask.sum() >= 0.12 * extent * extent and not _hides_too_much(owner, mask, areas):
            return mask, cx, cy
    return None


def render_upstream_scene(rng: np.random.Generator, image_size: int | tuple[int, int],
                          max_objects: int = 6) -> UpstreamScene:
    """Render one random pretraining scene.

    Args:
        rng: Source of all randomness; the same generator state gives the same scene.
        image_size: Side length, or (height, width), in pixels (at least 16).
        max_objects: Upper bound on the number of objects (0 to this many are drawn).

    Returns:
        The scene: RGB image and per-pixel labels (``upstream_class_names()`` indices).
    """
    if max_objects < 0:
        raise ValueError(f"max_objects must be >= 0, got {max_objects}")
    h, w = _image_hw(image_size)
    scale = min(h, w) / _REFERENCE_SIZE
    kind = int(rng.integers(len(UPSTREAM_BACKGROUNDS)))
    image = _background(UPSTREAM_BACKGROUNDS[kind], rng, h, w, scale)
    labels = np.full((h, w), kind, dtype=np.uint16)
    owner = np.zeros((h, w), dtype=np.int16)  # 0 = background, k = k-th placed object
    full_area: list[int] = []

    for _ in range(int(rng.integers(0, max_objects + 1))):
        shape, texture = int(rng.integers(len(UPSTREAM_SHAPES))), int(rng.integers(len(UPSTREAM_TEXTURES)))
        colour = int(rng.integers(len(UPSTREAM_COLOURS)))
        placed = _place(UPSTREAM_SHAPES[shape], rng, owner, full_area, scale)
        if placed is None:
            continue  # no acceptable placement: one object fewer
        mask, cx, cy = placed
        area = int(mask.sum())
        ys, xs = np.nonzero(mask)
        base = _object_colour(rng, UPSTREAM_COLOURS[colour][1], image[ys, xs].mean(axis=0))
        shade = base * 0.35 if rng.random() < 0.5 else base + (255.0 - base) * 0.6
        pattern = _texture(UPSTREAM_TEXTURES[texture], rng, ys, xs, cx, cy, scale)
        image[ys, xs] = base + (shade - base) * pattern[:, None]
        labels[mask] = object_label(shape, texture, colour)
        owner[mask] = len(full_area) + 1
        full_area.append(area)

    image += rng.normal(0.0, rng.uniform(2.0, 8.0), size=image.shape).astype(np.float32)
    return UpstreamScene(image=np.clip(image, 0.0, 255.0).astype(np.uint8), labels=labels)
