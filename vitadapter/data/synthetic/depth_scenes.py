"""Random indoor-like scenes with exact metric depth, for the depth demo and tests (no downloads).

A pinhole camera with NYU Depth v2's field of view (focal length 0.81 × image width, principal point at the
centre) stands 1-1.8 m above a floor and looks down by 3-20°; a wall stands 3.5-9 m ahead (along the floor), so
every depth stays below ~9.1 m. The floor carries a checkerboard or plank texture and the wall bricks or stripes,
all of fixed size in metres, so how large the texture looks tells how far away it is, and farther surfaces are
a little darker. Shapes of ``shapes.py`` stand upright on the floor, facing the camera (so each one has the
depth of the floor point under its base; nearer shapes are larger and lower), painted far to near. A few small
holes of depth 0 mimic missing Kinect measurements. The ranges keep the task from being a per-pixel prior (the
median depth of each pixel over the training set scores AbsRel ~0.22) while a tiny random-init ViT learns it
in minutes.

Depth is z-depth (distance along the optical axis, as NYU's), exact at pixel centres: scenes are drawn
``_SUPERSAMPLE`` times larger, the image averaged down and the depth sampled at the centre of each block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vitadapter.data.synthetic.shapes import SHAPE_CLASSES, _shape_mask

# Bump whenever render_depth_scene draws differently: the writer records it, so older sets are rewritten.
DEPTH_SCENE_VERSION = 1
FOCAL_PER_WIDTH = 0.81  # NYU's Kinect: fx = 518.9 px for 640 px images
CAMERA_HEIGHT = (1.0, 1.8)  # metres above the floor
PITCH_DEGREES = (3.0, 20.0)  # looking down
WALL_DISTANCE = (3.5, 9.0)  # metres along the floor
OBJECT_SIZE = (0.35, 0.9)  # metres across
FLOOR_TILE = 0.5  # metres: checker squares; planks are 0.2 m wide
WALL_TILE = 0.3  # metres: brick height (bricks are twice as wide) and stripe width
_SUPERSAMPLE = 3  # odd, so the centre sample of a block is the final pixel's centre
_MIN_CONTRAST = 60.0


@dataclass
class DepthScene:
    """A rendered image and its depth.

    Attributes:
        image: H×W×3 uint8 RGB image.
        depth: H×W float32 z-depth in metres; 0.0 marks pixels without depth.
    """

    image: np.ndarray
    depth: np.ndarray


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random colour and a second one at least ``_MIN_CONTRAST`` away from it (best of a few draws)."""
    first = rng.uniform(30.0, 230.0, size=3)
    draws = rng.uniform(30.0, 230.0, size=(8, 3))
    dist = np.linalg.norm(draws - first, axis=1)
    ok = np.nonzero(dist >= _MIN_CONTRAST)[0]
    return first, draws[ok[0] if ok.size else int(dist.argmax())]


def _floor_pattern(rng: np.random.Generator, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """0/1 pattern of the floor at floor coordinates (x, z) in metres: a checkerboard or planks, turned by a yaw."""
    yaw = rng.uniform(-0.4, 0.4)
    c, s = math.cos(yaw), math.sin(yaw)
    a, b = c * x + s * z + rng.uniform(0, 1), -s * x + c * z + rng.uniform(0, 1)
    if rng.random() < 0.5:
        return (np.floor(a / FLOOR_TILE) + np.floor(b / FLOOR_TILE)) % 2
    board = np.floor(a / 0.2)
    joint = np.floor(b / 1.2 + 0.5 * (board % 2))  # staggered board ends
    seam = (b / 1.2 + 0.5 * (board % 2)) % 1 < 0.04
    return np.where(seam, 1.0, 0.6 * ((board + joint) % 2))  # boards in two shades, seams in the other colour


def _wall_pattern(rng: np.random.Generator, x: np.ndarray, up: np.ndarray) -> np.ndarray:
    """0/1 pattern of the wall at wall coordinates (x across, up from the floor) in metres: bricks or stripes."""
    x = x + rng.uniform(0, 1)
    if rng.random() < 0.5:
        return (np.floor(x / WALL_TILE) % 2).astype(np.float64)
    row = np.floor(up / WALL_TILE)
    across = (x / (2 * WALL_TILE) + 0.5 * (row % 2)) % 1
    return (((up / WALL_TILE) % 1 < 0.15) | (across < 0.08)).astype(np.float64)  # mortar lines


def _shift_to_base(mask: np.ndarray, base_row: int) -> np.ndarray:
    """``mask`` moved up or down so that its lowest row is ``base_row`` (the object stands on the floor there)."""
    rows = np.nonzero(mask.any(axis=1))[0]
    if rows.size == 0:
        return mask
    shift = base_row - int(rows[-1])
    out = np.zeros_like(mask)
    if shift >= 0:
        out[shift:] = mask[: mask.shape[0] - shift]
    else:
        out[:shift] = mask[-shift:]
    return out


def render_depth_scene(rng: np.random.Generator, height: int = 120, width: int = 160,
                       max_objects: int = 3) -> DepthScene:
    """Render one random floor-and-wall scene with shapes standing on the floor.

    Args:
        rng: Source of all randomness; the same generator state gives the same scene.
        height: Image height in pixels.
        width: Image width in pixels.
        max_objects: Upper bound on the number of shapes (0 to this many are drawn).

    Returns:
        The scene: RGB image and z-depth in metres (0 = a hole without depth).
    """
    if height < 16 or width < 16:
        raise ValueError(f"images must be at least 16 px per side, got {height}x{width}")
    if max_objects < 0:
        raise ValueError(f"max_objects must be >= 0, got {max_objects}")
    k = _SUPERSAMPLE
    hs, ws = height * k, width * k
    f, cx, cy = FOCAL_PER_WIDTH * width, width / 2, height / 2
    cam_h = rng.uniform(*CAMERA_HEIGHT)
    pitch = math.radians(rng.uniform(*PITCH_DEGREES))
    wall = rng.uniform(*WALL_DISTANCE)
    cos_p, sin_p = math.cos(pitch), math.sin(pitch)

    # a ray through pixel (u, v) is (x, y, 1) in camera coordinates; per unit of z-depth it goes `down`
    # towards the floor and `ahead` along it
    x = ((np.arange(ws) + 0.5) / k - cx) / f
    y = ((np.arange(hs) + 0.5) / k - cy) / f
    down = (y * cos_p + sin_p)[:, None]
    ahead = (cos_p - y * sin_p)[:, None]
    floor_z = np.where(down > 1e-6, cam_h / np.maximum(down, 1e-6), np.inf)
    wall_z = wall / ahead
    on_floor = floor_z < wall_z
    depth = np.where(on_floor, floor_z, wall_z) * np.ones((1, ws))
    across = depth * x[None, :]

    floor_a, floor_b = _two_colours(rng)
    wall_a, wall_b = _two_colours(rng)
    floor = _floor_pattern(rng, across, depth * ahead)[..., None]
    bricks = _wall_pattern(rng, across, cam_h - depth * down)[..., None]
    image = np.where(on_floor[..., None], floor_a + (floor_b - floor_a) * floor,
                     wall_a + (wall_b - wall_a) * bricks)
    light = rng.uniform(0.15, 0.4)  # a lamp near the camera: farther surfaces are darker
    image *= (1.0 - light * depth / WALL_DISTANCE[1])[..., None]

    placed = []
    for _ in range(int(rng.integers(0, max_objects + 1))):
        along = rng.uniform(1.8, wall - 0.4)  # floor distance of the base
        z = cam_h * sin_p + along * cos_p
        base_v = cy + f * (cam_h * cos_p - along * sin_p) / z
        extent = f * rng.uniform(*OBJECT_SIZE) / z
        if base_v > height - 2 or base_v - extent < 0:
            continue  # base below the image or top above it: the base row would not tell the depth
        centre_u = rng.uniform(0.1, 0.9) * width
        placed.append((z, SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))], centre_u, base_v, extent))
    for z, name, centre_u, base_v, extent in sorted(placed, key=lambda p: -p[0]):  # far to near
        mask = _shape_mask(name, rng, hs, ws, centre_u * k, (base_v - extent / 2) * k, extent * k)
        mask = _shift_to_base(mask, int(base_v * k))
        colour = rng.uniform(20.0, 235.0, size=3)
        shade = 1.0 - 0.25 * np.linspace(0.0, 1.0, hs)[:, None, None]  # lit from above
        image = np.where(mask[..., None], colour * shade * (1.0 - light * z / WALL_DISTANCE[1]), image)
        depth = np.where(mask, z, depth)

    image = image.reshape(height, k, width, k, 3).mean(axis=(1, 3))
    depth = depth[k // 2 :: k, k // 2 :: k].astype(np.float32)
    vv, uu = np.mgrid[0:height, 0:width] + 0.5
    for _ in range(int(rng.integers(0, 3))):  # Kinect holes: small patches without depth
        hv, hu = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(1.5, 5.0, size=2)
        depth[((vv - hv) / ry) ** 2 + ((uu - hu) / rx) ** 2 <= 1.0] = 0.0
    image += rng.normal(0.0, rng.uniform(2.0, 6.0), size=image.shape)
    return DepthScene(image=np.clip(image, 0.0, 255.0).astype(np.uint8), depth=depth)
