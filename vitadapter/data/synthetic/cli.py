"""What the scripts/make_synthetic_*.py commands share: their first arguments, and writing a set once with a report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path


def synthetic_parser(doc: str, root: str, num_train: int, num_val: int,
                     val_help: str = "validation images") -> argparse.ArgumentParser:
    """A parser holding the dataset root and the two split sizes; the script adds the writer's other options.

    Args:
        doc: The script's docstring (its first line describes the command).
        root: Default dataset root.
        num_train: Default number of training images.
        num_val: Default number of validation images.
        val_help: What ``--num-val`` counts.

    Returns:
        The parser; every option the script adds must be named as the writer's keyword argument, except ``force``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path(root),
                        help=f"dataset root to write (default: {root})")
    parser.add_argument("--num-train", type=int, default=num_train, help=f"training images (default: {num_train})")
    parser.add_argument("--num-val", type=int, default=num_val, help=f"{val_help} (default: {num_val})")
    return parser


def write_once(args: argparse.Namespace, is_complete: Callable[..., bool], write: Callable[..., Path], size: str,
               contents: str, config: str = "") -> int:
    """Write the set that ``args`` describe unless ``args.root`` already holds it, and print what happened.

    Args:
        args: The parsed command line: ``root``, the writer's keyword arguments and, where the script takes it,
            ``force`` (rewrite even a complete set).
        is_complete: The writer's check for a finished set with these parameters.
        write: The writer.
        size: The image size as printed (e.g. "128px").
        contents: What the set holds, printed after the time taken.
        config: Config overrides printed before ``data.root`` in the training hint (e.g. "data=synthetic_depth ").

    Returns:
        The process exit code: 1 when the writer refuses (a real dataset there, bad parameters), else 0.
    """
    params = {k: v for k, v in vars(args).items() if k not in ("root", "force")}
    force = getattr(args, "force", None)
    if not force and is_complete(args.root, **params):
        print(f"{args.root} already holds this synthetic set; "
              f"{'nothing to do' if force is None else 'use --force to rewrite it'}.")
        return 0
    start = time.perf_counter()
    try:
        write(args.root, **params)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.num_train} + {args.num_val} images of {size} to {args.root} "
          f"in {time.perf_counter() - start:.1f} s; {contents}")
    print(f"train on it with: {config}data.root={args.root}")
    return 0
