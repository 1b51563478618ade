"""Which blocks of a ViT the neck reads: explicit indices, or a named rule resolved from the depth.

`even4` (the default) taps four blocks evenly spaced over the depth, ending at the last one: ⌊k·depth/4⌋ − 1 for
k = 1..4, i.e. [2, 5, 8, 11] for 12 blocks, [5, 11, 17, 23] for 24, [7, 15, 23, 31] for 32 and [9, 19, 29, 39]
for 40. That is DINOv3's FOUR_EVEN_INTERVALS for every depth but 24, where its code special-cases ViT-L with the
taps its paper used, [4, 11, 17, 23] (the same code calls [5, 11, 17, 23] "classic"). We keep one rule for every
depth, which also ends each of ViT-Adapter's block groups (blocks 5, 11, 17, 23 of a ViT-L); to reproduce the
paper's ViT-L taps exactly, give them as a list: `model.backbone.out_indices=[4,11,17,23]`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_EVEN = re.compile(r"even(\d+)")


def evenly_spaced_taps(depth: int, count: int = 4) -> list[int]:
    """Returns `count` block indices spread evenly over `depth` blocks, ending at the last one.

    Args:
        depth: number of transformer blocks.
        count: number of taps.

    Returns:
        0-based block indices, e.g. [2, 5, 8, 11] for depth 12 (blocks 3, 6, 9, 12).
    """
    if depth < count:
        raise ValueError(f"a ViT of depth {depth} cannot provide {count} distinct taps")
    return [(k + 1) * depth // count - 1 for k in range(count)]


def resolve_taps(spec: Sequence[int] | str | None, depth: int, name: str = "the ViT") -> list[int]:
    """The 0-based tapped blocks that `model.backbone.out_indices` names.

    Args:
        spec: block indices (negative from the end), a rule `even<N>` (N evenly spaced blocks ending at the last,
            `even4` the usual four), or None (`even4`).
        depth: the ViT's number of blocks.
        name: the model, for messages.

    Returns:
        Indices in 0..depth-1, in the given order.
    """
    if spec is None:
        return evenly_spaced_taps(depth)
    if isinstance(spec, str):
        match = _EVEN.fullmatch(spec.strip())
        if match is None:
            raise ValueError(f"model.backbone.out_indices={spec!r}: give a list of block indices or 'even4' "
                             "(four evenly spaced blocks ending at the last; 'evenN' for N)")
        return evenly_spaced_taps(depth, int(match.group(1)))
    taps = [int(i) for i in spec]
    if not taps or any(not -depth <= i < depth for i in taps):
        raise ValueError(f"model.backbone.out_indices={taps} outside the {depth} blocks of {name!r}")
    return [i % depth for i in taps]
