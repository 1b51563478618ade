"""Write the synthetic shapes dataset in the COCO 2017 instances layout.

Example:
    python scripts/make_synthetic_coco.py data/synthetic_coco --num-train 500 --num-val 50
"""

from __future__ import annotations

import argparse
import sys

from vitadapter.data.synthetic.cli import synthetic_parser, write_once
from vitadapter.data.synthetic.coco_writer import (
    SYNTHETIC_COCO_CATEGORY_IDS,
    is_synthetic_coco_complete,
    write_synthetic_coco,
)
from vitadapter.data.synthetic.shapes import SHAPE_CLASSES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = synthetic_parser(__doc__, "data/synthetic_coco", num_train=500, num_val=50)
    parser.add_argument("--image-size", type=int, default=160, help="image side in pixels (default: 160)")
    parser.add_argument("--max-objects", type=int, default=4, help="max objects per image (default: 4, as the demos)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the dataset and print where it went; returns the process exit code."""
    args = parse_args(argv)
    classes = ", ".join(f"{name} ({cid})" for cid, name in zip(SYNTHETIC_COCO_CATEGORY_IDS, SHAPE_CLASSES))
    return write_once(args, is_synthetic_coco_complete, write_synthetic_coco, f"{args.image_size}px",
                      f"categories (id): {classes}")


if __name__ == "__main__":
    sys.exit(main())
