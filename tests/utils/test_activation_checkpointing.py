"""The checkpointing helper: same outputs, gradients and BatchNorm statistics as no checkpointing, only the inputs kept,
and no checkpointing in evaluation or without gradients."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitadapter.cost import SavedTensorCounter
from vitadapter.utils.checkpointing import checkpointed, checkpointing_applies


def _region() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Conv2d(8, 4, 1)).train()


def _statistics(module: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for name, b in module.named_buffers() if "running" in name or "num_batches" in name]


def test_outputs_gradients_and_running_statistics_equal_the_plain_region() -> None:
    plain, checked = _region(), _region()
    image = torch.randn(2, 3, 8, 8)
    torch.manual_seed(1)
    expected = plain(image)
    expected.square().sum().backward(retain_graph=True)
    expected.square().sum().backward()  # a second backward through a retained graph recomputes once more
    torch.manual_seed(1)
    got = checkpointed(checked, image)
    got.square().sum().backward(retain_graph=True)
    got.square().sum().backward()
    assert torch.equal(got, expected)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(plain.parameters(), checked.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(_statistics(plain), _statistics(checked)))
    assert checked[1].num_batches_tracked.item() == 1


def test_torch_checkpoint_alone_would_count_the_batch_twice() -> None:
    region = _region()
    checkpoint(region, torch.randn(2, 3, 8, 8), use_reentrant=False).sum().backward()
    assert region[1].num_batches_tracked.item() == 2  # what the helper's restoration prevents


def test_only_the_inputs_are_kept_for_backward() -> None:
    region, image = _region(), torch.randn(2, 3, 8, 8)
    exclude = {p.untyped_storage().data_ptr() for p in region.parameters()}
    counts = []
    for run in (lambda: region(image), lambda: checkpointed(region, image)):
        counter = SavedTensorCounter(exclude)
        counter.start()
        run()
        counter.stop()
        counts.append(counter.total_bytes)
    plain, kept = counts
    assert kept == image.numel() * 4 and plain > 5 * kept


def test_a_function_of_modules_restores_the_statistics_of_state() -> None:
    plain, checked = _region(), _region()
    image = torch.randn(2, 3, 8, 8)
    plain[1](plain[0](image)).square().sum().backward()
    checkpointed(lambda x: checked[1](checked[0](x)), image, state=checked).square().sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(_statistics(plain), _statistics(checked)))
    assert checked[1].num_batches_tracked.item() == 1


def test_checkpointing_applies_only_in_training_with_gradients() -> None:
    region = _region()
    assert checkpointing_applies(region, True) and not checkpointing_applies(region, False)
    with torch.no_grad():
        assert not checkpointing_applies(region, True)
    assert not checkpointing_applies(region.eval(), True)
