"""Parameter counts as the run directory's metrics.json reports them."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from vitadapter.encoder import Encoder


def _count(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in {id(p): p for p in params}.values())


def parameter_counts(task: nn.Module) -> dict[str, float]:
    """Counts trainable and total parameters, and the trainable ones by part.

    Args:
        task: the model; a task (with an `encoder`) also gets the breakdown by part.

    Returns:
        {"params/trainable", "params/total", "params/trainable_pct"} (the last in percent), and for a
        task "params/trainable_adapter" (the PEFT method's tensors), "params/trainable_neck" (the
        spatial module) and "params/trainable_head" (everything else that trains: decode and
        auxiliary heads, the detector's FPN and heads); the three add up to "params/trainable".
    """
    total = _count(task.parameters())
    trainable = _count(p for p in task.parameters() if p.requires_grad)
    counts: dict[str, float] = {
        "params/trainable": trainable,
        "params/total": total,
        "params/trainable_pct": 100.0 * trainable / max(total, 1),
    }
    encoder = getattr(task, "encoder", None)
    if isinstance(encoder, Encoder):
        adapter = _count(encoder.method_parameters())
        neck = _count(p for p in encoder.neck.parameters() if p.requires_grad)
        counts.update({
            "params/trainable_adapter": adapter,
            "params/trainable_neck": neck,
            "params/trainable_head": trainable - adapter - neck,
        })
    return counts
