"""Write the synthetic shapes dataset in the COCO 2017 instances layout.

Example:
    python scripts/make_synthetic_coco.py data/synthetic_coco --num-train 500 --num-val 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vitadapter.data.synthetic.coco_writer import (
    SYNTHETIC_COCO_CATEGORY_IDS,
    is_synthetic_coco_complete,
    write_synthetic_coco,
)
from vitadapter.data.synthetic.shapes import SHAPE_CLASSES


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
        default=Path("data/synthetic_coco"),
        help="dataset root to write (default: data/synthetic_coco)",
    )
    parser.add_argument("--num-train", type=int, default=500, help="training images (default: 500)")
    parser.add_argument("--num-val", type=int, default=50, help="validation images (default: 50)")
    parser.add_argument("--image-size", type=int, default=160, help="image side in pixels (default: 160)")
    parser.add_argument("--max-objects", type=int, default=4, help="max objects per image (default: 4, as the demos)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
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
        image_size=args.image_size,
        max_objects=args.max_objects,
        seed=args.seed,
    )
    if is_synthetic_coco_complete(args.root, **params):
        print(f"{args.root} already holds this synthetic set; nothing to do.")
        return 0
    start = time.perf_counter()
    try:
        write_synthetic_coco(args.root, **params)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    classes = ", ".join(f"{name} ({cid})" for cid, name in zip(SYNTHETIC_COCO_CATEGORY_IDS, SHAPE_CLASSES))
    print(
        f"wrote {args.num_train} + {args.num_val} images of {args.image_size}px to {args.root} "
        f"in {time.perf_counter() - start:.1f} s; categories (id): {classes}"
    )
    print(f"train on it with: data.root={args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
