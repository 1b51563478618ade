"""The training loader a checkpoint can stop and restart at any batch, with the order and augmentations of an
uninterrupted run.

Every training sample is drawn as a key (index, seed), its seed a function of the run's seed, the rank,
the epoch and the index, and the dataset reseeds its augmentation pipeline with it. Augmentations therefore
depend on nothing a worker process remembers: not on num_workers, which worker gets which batch, or
batches prefetched and thrown away when a run stops. What a checkpoint must restore is the sampler's epoch
and position, which torchdata's StatefulDataLoader saves and Lightning checkpoints with the fit loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler
from torchdata.stateful_dataloader.stateful_dataloader import _ITERATOR_FINISHED

SampleKey = tuple[int, int]

# torchdata 0.11's StatefulDataLoader calls a torch API that torch has deprecated; nothing a user can change
warnings.filterwarnings("ignore", message=r".*'set_vital' is deprecated.*")


def sample_seed(seed: int, rank: int, epoch: int, index: int) -> int:
    """The augmentation seed of one training sample; unrelated seeds for different runs, ranks, epochs, images."""
    return int(np.random.SeedSequence([seed, rank, epoch, index]).generate_state(1)[0])


def keyed_index(key: int | SampleKey, transform: Any) -> int:
    """The dataset index in `key`; an (index, seed) key first reseeds `transform` (if any) with its seed."""
    if isinstance(key, tuple):
        index, seed = key
        if transform is not None:
            transform.set_random_seed(seed)
        return index
    return key


class ResumableShardSampler(StatefulDistributedSampler):
    """One rank's shuffled shard (order from seed + epoch) as (index, seed) keys, restorable to the key it reached.

    torchdata's sampler saves how many samples it yielded but not the epoch, and Lightning sets the
    epoch only after the restored iterator exists (whose worker processes have already drawn keys by
    then), so the epoch is saved and restored here. A state saved after the last sample of an epoch gives one
    empty iterator (the finished epoch), then the next epoch's, which is where Lightning resumes.
    """

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.epoch = state_dict["epoch"]

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        if self.next_yielded is not None and self.next_yielded >= self.num_samples:
            # restored after the epoch's last sample: decided here, not when the first key is drawn, because
            # worker processes draw keys as soon as the iterator exists
            self.next_yielded = None
            self.epoch += 1
            return iter(())
        return self._keys(super().__iter__())

    def _keys(self, indices: Iterator[int]) -> Iterator[SampleKey]:
        for index in indices:
            yield index, sample_seed(self.seed, self.rank, self.epoch, index)


class ResumableDataLoader(StatefulDataLoader):
    """A StatefulDataLoader whose state, once the epoch's last batch is out, says that its iterator is finished.

    Lightning ends an epoch by counting batches, so the iterator never raises StopIteration and its
    saved state would resume mid-epoch with nothing left, which Lightning could count as an epoch of
    its own. Marked finished, the restored loader starts the next epoch at once.
    """

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._iterator is not None and self._iterator._num_yielded >= len(self):
            state[_ITERATOR_FINISHED] = True
        return state
