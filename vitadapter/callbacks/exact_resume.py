"""Lightning callback that completes a checkpoint for exact resume: every rank's random generators and loader state."""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import numpy as np
import torch

from vitadapter.utils.ranks import gather_from_ranks

log = logging.getLogger(__name__)

RANK_STATES_KEY = "rank_states"


def global_random_states() -> dict[str, Any]:
    """The process-wide generators: torch (CPU and every CUDA device), NumPy's legacy global and Python's."""
    numpy_state = np.random.get_state(legacy=False)
    # plain ints instead of an ndarray, so that the safe reader (vitadapter.checkpoint.load_checkpoint_file) reads it
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_global_random_states(states: dict[str, Any]) -> None:
    """Restores what `global_random_states` returned."""
    torch.set_rng_state(states["torch"])
    numpy_state = {**states["numpy"], "state": {**states["numpy"]["state"]}}
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(L.Callback):
    """Saves what Lightning's checkpoint lacks for a bit-identical resume, for every rank.

    Lightning saves the optimiser, schedulers, loop progress and the training loader's state (a
    torchdata `StatefulDataLoader`: position inside the epoch, workers' augmentation generators), but
    only as rank 0 holds them, and no random generator at all. This callback gathers each rank's
    global generators and loader state into `checkpoint["rank_states"]`; on resume every rank takes
    its own loader state back before the loops load it, and its generators at `on_train_start`,
    after the training loader's iterator exists (creating it would otherwise advance them).

    The loaders draw their seeds from private generators (see `vitadapter.data.loaders`), so the
    global generators advance only in training steps: their state at a save is the state the next
    step starts from.
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        loops = checkpoint.get("loops")
        if loops is None:  # a weights-only save
            return
        own = {"random": global_random_states(), "loader": loops["fit_loop"]["state_dict"].get("combined_loader")}
        checkpoint[RANK_STATES_KEY] = gather_from_ranks(own)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(RANK_STATES_KEY)
        if trainer.state.fn != "fit" or "loops" not in checkpoint:
            return
        if states is None:
            log.warning("the checkpoint has no %r (written before exact resume existed): training resumes at its step "
                        "with freshly seeded random generators", RANK_STATES_KEY)
            return
        if len(states) != trainer.world_size:
            log.warning("the checkpoint was written by %d processes, this run has %d: the data shards and random "
                        "generators differ, so the resumed run will not match an uninterrupted one",
                        len(states), trainer.world_size)
            return
        own = states[trainer.global_rank]
        if own["loader"] is not None:
            checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] = own["loader"]
        self._to_restore = own["random"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore is not None:
            set_global_random_states(self._to_restore)
            self._to_restore = None
