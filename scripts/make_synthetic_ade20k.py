"""Write the synthetic shapes dataset in the ADE20K layout.

Example:
    python scripts/make_synthetic_ade20k.py data/synthetic_ade20k --num-train 1000 --num-val 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vitadapter.data.synthetic import SYNTHETIC_CLASS_NAMES, is_synthetic_ade20k_complete, write_synthetic_ade20k
from vitadapter.data.synthetic.shapes import STYLES


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
        default=Path("data/synthetic_ade20k"),
        help="dataset root to write (default: data/synthetic_ade20k)",
    )
    parser.add_argument("--num-train", type=int, default=1000, help="training images (default: 1000)")
    parser.add_argument("--num-val", type=int, default=100, help="validation images (default: 100)")
    parser.add_argument("--image-size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--max-objects", type=int, default=4, help="max objects per image (default: 4, as the demos)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    parser.add_argument("--style", choices=STYLES, default="flat",
                        help="flat (the demos) or textured (new colours and textures: the transfer demo's target)")
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
        image_size=args.image_size,
        max_objects=args.max_objects,
        seed=args.seed,
        style=args.style,
    )
    if not args.force and is_synthetic_ade20k_complete(args.root, **params):
        print(f"{args.root} already holds this synthetic set; use --force to rewrite it.")
        return 0
    start = time.perf_counter()
    try:
        write_synthetic_ade20k(args.root, **params)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.num_train} + {args.num_val} images of {args.image_size}px to {args.root} "
        f"in {time.perf_counter() - start:.1f} s; classes: {', '.join(SYNTHETIC_CLASS_NAMES)}"
    )
    print(f"train on it with: data.root={args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
