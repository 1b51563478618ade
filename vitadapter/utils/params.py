"""Parameter counts as the run directory's metrics.json reports them."""

from __future__ import annotations

from torch import nn


def parameter_counts(module: nn.Module) -> dict[str, float]:
    """Counts trainable and total parameters.

    Args:
        module: the model.

    Returns:
        {"params/trainable", "params/total", "params/trainable_pct"} (the last in percent).
    """
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {
        "params/trainable": trainable,
        "params/total": total,
        "params/trainable_pct": 100.0 * trainable / max(total, 1),
    }
