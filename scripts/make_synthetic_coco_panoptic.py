"""Write the synthetic panoptic set (shapes over textures) in the COCO panoptic 2017 layout.

Example:
    python scripts/make_synthetic_coco_panoptic.py data/synthetic_coco_panoptic --num-train 1000 --num-val 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vitadapter.data.synthetic.panoptic_writer import (
    is_synthetic_coco_panoptic_complete,
    synthetic_panoptic_categories,
    write_synthetic_coco_panoptic,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line arguments.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The parsed namespace.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("data/synthetic_coco_panoptic"),
                        help="dataset root to write (default: data/synthetic_coco_panoptic)")
    parser.add_argument("--num-train", type=int, default=1000, help="training images (default: 1000)")
    parser.add_argument("--num-val", type=int, default=100, help="validation images (default: 100)")
    parser.add_argument("--image-size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--max-things", type=int, default=5, help="max things per image (default: 5)")
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
    params = dict(num_train=args.num_train, num_val=args.num_val, image_size=args.image_size,
                  max_things=args.max_things, seed=args.seed)
    if is_synthetic_coco_panoptic_complete(args.root, **params):
        print(f"{args.root} already holds this synthetic set; nothing to do.")
        return 0
    start = time.perf_counter()
    try:
        write_synthetic_coco_panoptic(args.root, **params)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    classes = ", ".join(f"{c['name']} ({c['id']}, {'thing' if c['isthing'] else 'stuff'})"
                        for c in synthetic_panoptic_categories())
    print(f"wrote {args.num_train} + {args.num_val} images of {args.image_size}px to {args.root} "
          f"in {time.perf_counter() - start:.1f} s; categories (id, kind): {classes}")
    print(f"train on it with: data=synthetic_panoptic data.root={args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
