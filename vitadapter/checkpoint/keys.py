"""Which part of a task a state-dict key belongs to: the PEFT method ("adapter"), the neck or the head.

Every task holds one `Encoder` (the frozen ViT with the method placed on it, the method's hooks and the neck)
under some prefix, and its heads beside it:

    encoder.backbone.vit.blocks.3.drop_path1.adapter.up.weight          segmentation: the method, in the ViT
    encoder.hooks.prompts                                               the method, outside the blocks (VPT)
    encoder.neck.lateral.0.weight                                       the neck
    head.classifier.0.weight, aux_head.convs.0.0.weight                 the heads
    detector.model.backbone.encoder.backbone.vit.blocks.3...            detection: the same encoder, deeper
    detector.model.backbone.fpn..., detector.model.rpn..., detector.model.roi_heads...   the detector's heads

The parts are the same three that `params/trainable_adapter`, `_neck` and `_head` count, and that
`init_from.parts` copies.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTS = ("adapter", "neck", "head")
ENCODER = "encoder"
# the encoder's children and the part each one's tensors belong to
ENCODER_CHILDREN = {"backbone": "adapter", "hooks": "adapter", "neck": "neck"}
_VIT_BLOCKS = ["backbone", "vit", "blocks"]


@dataclass(frozen=True)
class StateKey:
    """A state-dict key and where it sits.

    Attributes:
        key: the key as in the state dict.
        part: "adapter" (the method's tensors: inside the encoder's ViT or its hooks), "neck" (the encoder's
            spatial module) or "head" (everything outside the encoder: decode and auxiliary heads, the
            detector's FPN, RPN and RoI heads).
        encoder: the key's prefix up to and including `encoder.` (`encoder.` for segmentation,
            `detector.model.backbone.encoder.` for detection); "" outside the encoder.
        name: the key from inside the encoder (`backbone.vit.blocks.0.drop_path1.adapter.up.weight`), so that a
            tensor has one name in every task; outside the encoder, the key itself.
        block: the ViT block index of a key under the encoder's `backbone.vit.blocks.N.`; None elsewhere.
        in_block: the rest of that key after `backbone.vit.blocks.N.` (e.g. `drop_path1.adapter.up.weight`).
    """

    key: str
    part: str
    encoder: str = ""
    name: str = ""
    block: int | None = None
    in_block: str | None = None


def classify_key(key: str) -> StateKey:
    """Places a state-dict key of a task (or of a model holding tasks, e.g. `tasks.seg.encoder...`).

    The encoder is the first `encoder` component of the key that has something after it.

    Raises:
        ValueError: a key inside the encoder but in none of its known children (backbone, hooks, neck).
    """
    components = key.split(".")
    if ENCODER not in components[:-1]:
        return StateKey(key, "head", "", key)
    at = components.index(ENCODER)
    inside = components[at + 1:]
    part = ENCODER_CHILDREN.get(inside[0])
    if part is None:
        raise ValueError(f"state-dict key {key!r}: the encoder has no child {inside[0]!r} (it holds "
                         f"{', '.join(ENCODER_CHILDREN)}); add the new child to ENCODER_CHILDREN in "
                         "vitadapter/checkpoint/keys.py with the part its tensors belong to")
    encoder, name = ".".join(components[:at + 1]) + ".", ".".join(inside)
    if inside[:3] == _VIT_BLOCKS and len(inside) > 4 and inside[3].isdigit():
        return StateKey(key, part, encoder, name, int(inside[3]), ".".join(inside[4:]))
    return StateKey(key, part, encoder, name)


def check_parts(parts: tuple[str, ...] | list[str], setting: str = "parts") -> None:
    """Refuses part names other than `PARTS`, naming `setting` (e.g. `init_from.parts`)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"{setting}={list(parts)}: choose from {list(PARTS)}")
