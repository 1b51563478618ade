"""Write the synthetic panoptic set (shapes over textures) in the COCO panoptic 2017 layout.

Example:
    python scripts/make_synthetic_coco_panoptic.py data/synthetic_coco_panoptic --num-train 1000 --num-val 100
"""

from __future__ import annotations

import argparse
import sys

from vitadapter.data.synthetic.cli import synthetic_parser, write_once
from vitadapter.data.synthetic.panoptic_writer import (
    is_synthetic_coco_panoptic_complete,
    synthetic_panoptic_categories,
    write_synthetic_coco_panoptic,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = synthetic_parser(__doc__, "data/synthetic_coco_panoptic", num_train=1000, num_val=100)
    parser.add_argument("--image-size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--max-things", type=int, default=5, help="max things per image (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the dataset and print where it went; returns the process exit code."""
    args = parse_args(argv)
    classes = ", ".join(f"{c['name']} ({c['id']}, {'thing' if c['isthing'] else 'stuff'})"
                        for c in synthetic_panoptic_categories())
    return write_once(args, is_synthetic_coco_panoptic_complete, write_synthetic_coco_panoptic,
                      f"{args.image_size}px", f"categories (id, kind): {classes}", config="data=synthetic_panoptic ")


if __name__ == "__main__":
    sys.exit(main())
