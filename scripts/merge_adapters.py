"""Merge the PEFT modules of several train.py checkpoints into one checkpoint that eval.py and predict.py take.

    python scripts/merge_adapters.py --out M.ckpt A.ckpt B.ckpt [--weights 0.5 0.5] [--head-from 1 | B.ckpt]

The checkpoints must train one method with the same hyper-parameters on the same frozen ViT. LoRA merges as the
weighted sum of the updates (one LoRA of rank sum r_i, any weights); bottleneck, Convpass, VPT, SSF, BitFit, norm
and full fine-tuning as the weighted mean of their tensors (weights summing to 1); DoRA and the generic peft
tuners are refused. The neck and heads (and data and inference settings) are those of the first checkpoint, or
of `--head-from` (0-based index or path). Rules: `vitadapter/multitask/merging.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The output path, the checkpoints, their weights and where the neck and heads come from."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoints written by train.py")
    parser.add_argument("--out", required=True, help="the merged checkpoint to write")
    parser.add_argument("--weights", nargs="+", type=float, default=None,
                        help="one weight per checkpoint (default 1/N each)")
    parser.add_argument("--head-from", default="0",
                        help="the checkpoint whose neck and heads are kept: 0-based index or path (default 0)")
    args = parser.parse_args(argv)
    head_from = args.head_from
    args.head_from = int(head_from) if head_from.lstrip("-").isdigit() else head_from
    return args


def main(argv: list[str] | None = None) -> None:
    """Merges, writes the checkpoint and prints what it holds and how to evaluate it."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from vitadapter.checkpoint import UnsafeCheckpointError
    from vitadapter.multitask.merging import MergeError, merge_checkpoints, merge_summary, save_merged

    try:
        checkpoint = merge_checkpoints(args.checkpoints, args.weights, args.head_from)
    except (MergeError, UnsafeCheckpointError, FileNotFoundError) as error:
        sys.exit(f"merge_adapters.py: error: {error}")
    path = save_merged(checkpoint, args.out)
    print(f"wrote {path}: {merge_summary(checkpoint)}")
    print(f"evaluate it with: python eval.py ckpt_path={path}")


if __name__ == "__main__":
    main()
