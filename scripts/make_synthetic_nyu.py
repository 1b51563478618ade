"""Write the synthetic depth dataset in NYU Depth v2's mmseg layout.

Example:
    python scripts/make_synthetic_nyu.py data/synthetic_nyu --num-train 1000 --num-val 100
"""

from __future__ import annotations

import argparse
import sys

from vitadapter.data.synthetic.cli import synthetic_parser, write_once
from vitadapter.data.synthetic.depth_writer import is_synthetic_nyu_complete, write_synthetic_nyu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = synthetic_parser(__doc__, "data/synthetic_nyu", num_train=1000, num_val=100,
                              val_help="validation (test split) images")
    parser.add_argument("--height", type=int, default=120, help="image height in pixels (default: 120)")
    parser.add_argument("--width", type=int, default=160, help="image width in pixels (default: 160, NYU's 3:4)")
    parser.add_argument("--max-objects", type=int, default=3, help="max shapes per image (default: 3, as the demo)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    parser.add_argument("--force", action="store_true", help="rewrite even if the same set is already there")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the dataset and print where it went; returns the process exit code."""
    args = parse_args(argv)
    return write_once(args, is_synthetic_nyu_complete, write_synthetic_nyu, f"{args.height}x{args.width} px",
                      "depth: uint16 millimetre PNGs, 0 = no depth", config="data=synthetic_depth ")


if __name__ == "__main__":
    sys.exit(main())
