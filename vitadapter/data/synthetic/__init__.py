"""Synthetic datasets written in the real on-disk formats, for demos and tests without downloads."""

from vitadapter.data.synthetic.ade20k_writer import (
    SYNTHETIC_CLASS_NAMES,
    is_synthetic_ade20k_complete,
    write_synthetic_ade20k,
)
from vitadapter.data.synthetic.shapes import SHAPE_CLASSES, Instance, Scene, render_scene

__all__ = [
    "SHAPE_CLASSES",
    "SYNTHETIC_CLASS_NAMES",
    "Instance",
    "Scene",
    "is_synthetic_ade20k_complete",
    "render_scene",
    "write_synthetic_ade20k",
]
