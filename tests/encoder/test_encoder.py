"""The encoder's block loop: which blocks run, gradient checkpointing, merging refusals."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from vitadapter.adapters import build_method
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck

NECK = partial(MultiLevelNeck, out_channels=8)


def test_blocks_after_the_last_tap_never_run() -> None:
    backbone = ViTBackbone("test_vit", out_indices=[0, 1, 2, 3])  # depth 6
    calls = []
    for index, block in enumerate(backbone.vit.blocks):
        block.register_forward_hook(lambda module, args, out, index=index: calls.append(index))
    Encoder(backbone, NECK)(torch.randn(1, 3, 32, 32))
    assert calls == [0, 1, 2, 3]


@pytest.mark.parametrize("method", ["bottleneck", "lora", "vpt"])
def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(method: str) -> None:
    image = torch.randn(2, 3, 48, 32)
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        encoder = Encoder(ViTBackbone("test_vit", grad_checkpointing=checkpointing), NECK,
                          build_method(method, **({"dropout": 0.0} if method == "vpt" else {})))
        with torch.no_grad():
            for param in encoder.method_parameters():
                param.add_(0.01)
        encoder.train()
        pyramid = encoder(image)
        sum(level.square().mean() for level in pyramid.values()).backward()
        results.append((pyramid, {n: p.grad.clone() for n, p in encoder.named_parameters() if p.requires_grad}))
    (plain, plain_grads), (checkpointed, checkpointed_grads) = results
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain.values(), checkpointed.values()))
    assert plain_grads.keys() == checkpointed_grads.keys()
    assert all(torch.allclose(plain_grads[n], checkpointed_grads[n], atol=1e-6) for n in plain_grads)


def test_merging_a_method_that_cannot_merge_is_refused() -> None:
    encoder = Encoder(ViTBackbone("test_vit"), NECK, build_method("bottleneck"))
    with pytest.raises(ValueError, match="'bottleneck' cannot be merged"):
        encoder.merge()
