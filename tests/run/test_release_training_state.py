"""Before the final validation reads the saved checkpoint back, the gradients and the optimiser state are freed."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vitadapter.run.train import release_training_state


def test_gradients_and_optimizer_state_are_freed() -> None:
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    assert len(optimizer.state) == 2 and model.weight.grad is not None
    release_training_state(SimpleNamespace(lightning_module=model, optimizers=[optimizer]))
    assert len(optimizer.state) == 0 and model.weight.grad is None and model.bias.grad is None
    optimizer.step()  # still usable: the state is made again at the next step
