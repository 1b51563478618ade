"""UPerNet and Semantic FPN with `grad_checkpointing`: bit-identical logits, gradients and BatchNorm statistics (dropout
on), far fewer saved activations, and plain runs in evaluation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from vitadapter.cost import SavedTensorCounter
from vitadapter.heads import SemanticFPNHead, UPerNetHead

HEADS: dict[str, Callable[..., nn.Module]] = {
    "upernet": lambda cp: UPerNetHead(16, 5, channels=16, dropout=0.5, grad_checkpointing=cp),
    "fpn_gn": lambda cp: SemanticFPNHead(16, 5, channels=16, dropout=0.5, grad_checkpointing=cp),
    "fpn_bn": lambda cp: SemanticFPNHead(16, 5, channels=16, dropout=0.5, norm="bn", grad_checkpointing=cp),
}


def _pyramid() -> dict[str, torch.Tensor]:
    torch.manual_seed(2)
    return {f"s{s}": torch.randn(2, 16, 40 // s, 36 // s, requires_grad=True) for s in (4, 8, 16, 32)}


def _step(head: nn.Module, pyramid: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    counter = SavedTensorCounter({p.untyped_storage().data_ptr() for p in head.parameters()})
    torch.manual_seed(1)  # the same dropout draws in both heads
    counter.start()
    try:
        logits = head(pyramid)
    finally:
        counter.stop()
    logits.square().mean().backward()
    grads = [p.grad for p in head.parameters()] + [level.grad for level in pyramid.values()]
    return logits, grads, counter.total_bytes


@pytest.mark.parametrize("name", sorted(HEADS))
def test_checkpointing_changes_nothing_but_the_saved_activations(name: str) -> None:
    torch.manual_seed(0)
    plain = HEADS[name](False).train()
    torch.manual_seed(0)
    checked = HEADS[name](True).train()
    expected, expected_grads, plain_bytes = _step(plain, _pyramid())
    got, grads, checked_bytes = _step(checked, _pyramid())
    assert torch.equal(got, expected)
    assert all(a is not None and torch.equal(a, b) for a, b in zip(grads, expected_grads))
    assert all(torch.equal(a, b) for a, b in zip(plain.buffers(), checked.buffers()))
    assert checked_bytes < 0.5 * plain_bytes


@pytest.mark.parametrize("name", sorted(HEADS))
def test_evaluation_runs_without_checkpointing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    head = HEADS[name](True).train()
    module = type(head).__module__
    monkeypatch.setattr(f"{module}.checkpointed", lambda *args, **kwargs: pytest.fail("checkpointed"))
    with torch.no_grad():
        head(_pyramid())
    head.eval()(_pyramid())
