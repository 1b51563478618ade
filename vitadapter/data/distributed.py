"""Evaluation sampling under DDP that scores every image exactly once."""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, Sampler, SequentialSampler


def unrepeated_sampler(dataset: Dataset) -> Sampler:
    """An in-order sampler; under DDP each rank gets a disjoint share and no image is repeated.

    torch's DistributedSampler pads the last shard with repeated images, which would count them
    twice in dataset-level metrics; Lightning keeps a sampler that is already distributed.

    Args:
        dataset: the evaluation dataset.

    Returns:
        The sampler for the evaluation DataLoader.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return UnrepeatedDistributedSampler(dataset, shuffle=False)
    return SequentialSampler(dataset)
