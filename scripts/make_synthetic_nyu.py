"""Write the synthetic depth dataset in NYU Depth v2's mmseg layout.

Example:
    python scripts/make_synthetic_nyu.py data/synthetic_nyu --num-train 1000 --num-val 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vitadapter.data.synthetic.depth_writer import is_synthetic_nyu_complete, write_synthetic_nyu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The parsed namespace.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "root",
        type=Path,
        nargs="?",
        default=Path("data/synthetic_nyu"),
        help="dataset root to write (default: data/synthetic_nyu)",
    )
    parser.add_argument("--num-train", type=int, default=1000, help="training images (default: 1000)")
    parser.add_argument("--num-val", type=int, default=100, help="validation (test split) images (default: 100)")
    parser.add_argument("--height", type=int, default=120, help="image height in pixels (default: 120)")
    parser.add_argument("--width", type=int, default=160, help="image width in pixels (default: 160, NYU's 3:4)")
    parser.add_argument("--max-objects", type=int, default=3, help="max shapes per image (default: 3, as the demo)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    parser.add_argument("--force", action="store_true", help="rewrite even if the same set is already there")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the dataset and print where it went.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    args = parse_args(argv)
    params = dict(
        num_train=args.num_train,
        num_val=args.num_val,
        height=args.height,
        width=args.width,
        max_objects=args.max_objects,
        seed=args.seed,
    )
    if not args.force and is_synthetic_nyu_complete(args.root, **params):
        print(f"{args.root} already holds this synthetic set; use --force to rewrite it.")
        return 0
    start = time.perf_counter()
    try:
        write_synthetic_nyu(args.root, **params)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.num_train} + {args.num_val} images of {args.height}x{args.width} px to {args.root} "
        f"in {time.perf_counter() - start:.1f} s; depth: uint16 millimetre PNGs, 0 = no depth"
    )
    print(f"train on it with: data=synthetic_depth data.root={args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
