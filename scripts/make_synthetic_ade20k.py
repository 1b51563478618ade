"""Write the synthetic shapes dataset in the ADE20K layout.

Example:
    python scripts/make_synthetic_ade20k.py data/synthetic_ade20k --num-train 1000 --num-val 100
"""

from __future__ import annotations

import argparse
import sys

from vitadapter.data.synthetic import SYNTHETIC_CLASS_NAMES, is_synthetic_ade20k_complete, write_synthetic_ade20k
from vitadapter.data.synthetic.cli import synthetic_parser, write_once
from vitadapter.data.synthetic.shapes import STYLES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = synthetic_parser(__doc__, "data/synthetic_ade20k", num_train=1000, num_val=100)
    parser.add_argument("--image-size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--max-objects", type=int, default=4, help="max objects per image (default: 4, as the demos)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    parser.add_argument("--style", choices=STYLES, default="flat",
                        help="flat (the demos) or textured (new colours and textures: the transfer demo's target)")
    parser.add_argument("--force", action="store_true", help="rewrite even if the same set is already there")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the dataset and print where it went; returns the process exit code."""
    args = parse_args(argv)
    return write_once(args, is_synthetic_ade20k_complete, write_synthetic_ade20k, f"{args.image_size}px",
                      f"classes: {', '.join(SYNTHETIC_CLASS_NAMES)}")


if __name__ == "__main__":
    sys.exit(main())
