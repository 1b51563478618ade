"""ViT-Adapter with `grad_checkpointing`: bit-identical pyramid, gradients and BatchNorm statistics (drop-path on), far
fewer saved activations, and plain runs in evaluation."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from vitadapter.adapters import build_method
from vitadapter.backbone import ViTBackbone
from vitadapter.cost import SavedTensorCounter
from vitadapter.encoder import Encoder
from vitadapter.necks import ViTAdapterNeck


def _encoder(inject: bool, checkpointing: bool) -> Encoder:
    torch.manual_seed(0)
    neck = partial(ViTAdapterNeck, inject=inject, drop_path=0.3, grad_checkpointing=checkpointing)
    encoder = Encoder(ViTBackbone("test_vit"), neck, build_method("none"))
    with torch.no_grad():  # injectors that act, so their gradients pass through the frozen blocks
        for injector in encoder.neck.injectors or []:
            injector.gamma.fill_(0.1)
    return encoder.train()


def _step(encoder: Encoder, image: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], int]:
    counter = SavedTensorCounter({p.untyped_storage().data_ptr() for p in encoder.parameters()})
    torch.manual_seed(1)  # the same drop-path draws in both encoders
    counter.start()
    try:
        pyramid = encoder(image)
    finally:
        counter.stop()
    sum(level.square().mean() for level in pyramid.values()).backward()
    grads = {n: p.grad for n, p in encoder.named_parameters() if p.requires_grad}
    return list(pyramid.values()), grads, counter.total_bytes


@pytest.mark.parametrize("inject", [False, True])
def test_checkpointing_changes_nothing_but_the_saved_activations(inject: bool) -> None:
    image = torch.randn(2, 3, 64, 80)
    plain, checked = _encoder(inject, False), _encoder(inject, True)
    expected, expected_grads, plain_bytes = _step(plain, image)
    got, grads, checked_bytes = _step(checked, image)
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert grads.keys() == expected_grads.keys() and all(g is not None for g in grads.values())
    assert [name for name in grads if not torch.equal(grads[name], expected_grads[name])] == []
    assert all(torch.equal(a, b) for a, b in zip(plain.neck.buffers(), checked.neck.buffers()))
    assert checked_bytes < 0.5 * plain_bytes


def test_evaluation_runs_without_checkpointing(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = _encoder(True, True)
    monkeypatch.setattr("vitadapter.necks.vit_adapter.checkpointed", lambda *args, **kwargs: pytest.fail("checkpointed"))
    with torch.no_grad():
        encoder(torch.randn(2, 3, 32, 32))
    encoder.eval()(torch.randn(1, 3, 32, 32))
