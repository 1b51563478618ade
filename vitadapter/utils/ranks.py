"""Collecting a Python object from every process of a DDP run."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def gather_from_ranks(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order; `[obj]` outside DDP (a collective: every rank must call it)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
