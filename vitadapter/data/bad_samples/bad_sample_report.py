"""Reports the bad data files that training and validation skipped (`data.skip_bad_samples=true`).

The datasets list what they skipped in each batch (`batch["skipped"]`, see `vitadapter.data.bad_samples`),
so the records leave loader worker processes with the batches. This callback warns once per file,
gathers the records of every DDP rank and hands train.py and eval.py the figures for metrics.json.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L

from vitadapter.data.bad_samples import SKIPPED, BadSampleError
from vitadapter.tasks.loss_guard import batch_image_names
from vitadapter.utils.ranks import gather_from_ranks

log = logging.getLogger(__name__)


def _union_over_ranks(files: dict[str, str], count: int = 0) -> tuple[dict[str, str], int]:
    """The files (path -> reason) of every rank merged and the counts summed (a collective under DDP)."""
    payloads = gather_from_ranks((files, count))
    merged: dict[str, str] = {}
    for rank_files, _ in payloads:
        merged.update(rank_files)
    return merged, sum(rank_count for _, rank_count in payloads)


class BadSampleReport(L.Callback):
    """Tallies the skipped bad files: training's over the whole run, validation's and its scored images per validation.

    Training's tally is checkpointed, gathered from every rank first (Lightning saves rank 0's callback
    state), so a resumed run reports the files skipped before its checkpoint too. A validation that
    skipped every image raises instead of reporting scores of nothing. train.py and eval.py add the
    figures of `metrics` to metrics.json; `vitadapter.run.build.build_trainer` adds this callback to
    every trainer, so no configuration can drop bad files silently.
    """

    def __init__(self) -> None:
        self.train_files: dict[str, str] = {}
        self.val_files: dict[str, str] = {}
        self.val_images = 0
        self._warned: set[str] = set()

    def _record(self, files: dict[str, str], batch: Any, split: str) -> None:
        for file, reason in batch.get(SKIPPED, ()) if isinstance(batch, Mapping) else ():
            files[file] = reason
            if file not in self._warned:
                self._warned.add(file)
                log.warning("skipped bad %s file %s: %s", split, file, reason)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._record(self.train_files, batch, "training")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_files, _ = _union_over_ranks(self.train_files)
        if self.train_files and trainer.is_global_zero:
            log.warning("training skipped %d bad file(s), each replaced by the next good sample; metrics.json lists "
                        "them under data/skipped_train_files", len(self.train_files))

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_files, self.val_images = {}, 0

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self._record(self.val_files, batch, "validation")
        self.val_images += len(batch_image_names(batch))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_files, self.val_images = _union_over_ranks(self.val_files, self.val_images)
        if not self.val_files or trainer.sanity_checking:
            return
        if not self.val_images:
            file, reason = next(iter(sorted(self.val_files.items())))
            raise BadSampleError(
                f"every validation image was skipped as bad ({len(self.val_files)} file(s), e.g. {file}: {reason}); "
                "there is nothing to score. Fix or replace the files.", file=file, reason=reason)
        if trainer.is_global_zero:
            log.warning("validation scored %d image(s) and skipped %d bad file(s); metrics.json lists them under "
                        "data/skipped_val_files", self.val_images, len(self.val_files))

    def state_dict(self) -> dict[str, Any]:
        # every rank builds the checkpoint (Trainer.save_checkpoint runs on all), rank 0 writes it
        self.train_files, _ = _union_over_ranks(self.train_files)
        return {"train_files": dict(self.train_files)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_files = dict(state_dict.get("train_files", {}))
        self._warned.update(self.train_files)

    def metrics(self, training: bool = True) -> dict[str, Any]:
        """The figures for metrics.json.

        Args:
            training: include training's (train.py); eval.py reports validation's only.

        Returns:
            `val/num_images` (the images the last validation scored), `data/skipped_val` and
            `data/skipped_val_files` (path -> what is wrong), and with `training` the same two for training.
        """
        figures: dict[str, Any] = {"val/num_images": self.val_images, "data/skipped_val": len(self.val_files),
                                   "data/skipped_val_files": dict(sorted(self.val_files.items()))}
        if training:
            figures["data/skipped_train"] = len(self.train_files)
            figures["data/skipped_train_files"] = dict(sorted(self.train_files.items()))
        return figures


def bad_sample_report(trainer: L.Trainer) -> BadSampleReport:
    """The trainer's `BadSampleReport` (every trainer built by `build_trainer` has one)."""
    report = next((c for c in trainer.callbacks if isinstance(c, BadSampleReport)), None)
    if report is None:
        raise RuntimeError("the trainer has no BadSampleReport callback; build it with "
                           "vitadapter.run.build.build_trainer")
    return report
