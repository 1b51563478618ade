"""The one classifier of state-dict keys: the method's tensors, the neck's and the heads', named from the encoder."""

from __future__ import annotations

import pytest

from vitadapter.checkpoint import StateKey, classify_key


def test_a_tensor_has_one_name_in_a_segmentation_and_a_detection_task() -> None:
    seg = classify_key("encoder.backbone.vit.blocks.0.drop_path1.adapter.up.weight")
    det = classify_key("detector.model.backbone.encoder.backbone.vit.blocks.0.drop_path1.adapter.up.weight")
    assert (seg.part, seg.name, seg.block, seg.in_block) == (det.part, det.name, det.block, det.in_block) == \
        ("adapter", "backbone.vit.blocks.0.drop_path1.adapter.up.weight", 0, "drop_path1.adapter.up.weight")
    assert (seg.encoder, det.encoder) == ("encoder.", "detector.model.backbone.encoder.")


@pytest.mark.parametrize("key, expected", [
    ("encoder.hooks.prompts", StateKey("encoder.hooks.prompts", "adapter", "encoder.", "hooks.prompts")),
    ("encoder.backbone.vit.blocks.11.attn.qkv.lora_A.default.weight",
     StateKey("encoder.backbone.vit.blocks.11.attn.qkv.lora_A.default.weight", "adapter", "encoder.",
              "backbone.vit.blocks.11.attn.qkv.lora_A.default.weight", 11, "attn.qkv.lora_A.default.weight")),
    ("encoder.backbone.vit.norm.bias", StateKey("encoder.backbone.vit.norm.bias", "adapter", "encoder.",
                                                "backbone.vit.norm.bias")),
    ("encoder.neck.lateral.0.weight", StateKey("encoder.neck.lateral.0.weight", "neck", "encoder.",
                                               "neck.lateral.0.weight")),
    ("head.conv_seg.weight", StateKey("head.conv_seg.weight", "head", "", "head.conv_seg.weight")),
    ("aux_head.convs.0.1.running_mean", StateKey("aux_head.convs.0.1.running_mean", "head", "",
                                                 "aux_head.convs.0.1.running_mean")),
    ("detector.model.backbone.fpn.inner_blocks.0.0.weight",
     StateKey("detector.model.backbone.fpn.inner_blocks.0.0.weight", "head", "",
              "detector.model.backbone.fpn.inner_blocks.0.0.weight")),
    ("detector.model.rpn.head.cls_logits.bias", StateKey("detector.model.rpn.head.cls_logits.bias", "head", "",
                                                         "detector.model.rpn.head.cls_logits.bias")),
    # several tasks in one model (MultiTaskModel): the first `encoder` component
    ("tasks.ade.encoder.neck.rescales.0.0.bias", StateKey("tasks.ade.encoder.neck.rescales.0.0.bias", "neck",
                                                          "tasks.ade.encoder.", "neck.rescales.0.0.bias")),
])
def test_keys_are_placed_by_the_module_that_holds_them(key: str, expected: StateKey) -> None:
    assert classify_key(key) == expected


def test_an_unknown_child_of_the_encoder_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"state-dict key 'encoder.extra.weight': the encoder has no child 'extra' "
                                         r"\(it holds backbone, hooks, neck\); add the new child to ENCODER_CHILDREN"):
        classify_key("encoder.extra.weight")
