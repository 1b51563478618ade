"""Which checkpoint a training run resumes from: an explicit path, `last`, or a requeued SLURM job's own."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def resume_checkpoint(ckpt_path: str | None, output_dir: Path) -> str | None:
    """Resolves `ckpt_path` for `trainer.fit`.

    Args:
        ckpt_path: None (a fresh run), a checkpoint file, or "last": `checkpoints/last.ckpt` of this
            run directory (resume with `hydra.run.dir=<that run>`). A job that SLURM requeued
            (`SLURM_RESTART_COUNT` > 0, e.g. after preemption or its time limit) resumes from its
            own `last.ckpt` even without `ckpt_path`, instead of training from step 0 over it.
        output_dir: the run directory.

    Returns:
        The checkpoint file to resume from, or None to start at step 0.
    """
    last = output_dir / "checkpoints" / "last.ckpt"
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    if ckpt_path == "last" or (ckpt_path is None and requeued):
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        if ckpt_path == "last":
            raise FileNotFoundError(
                f"ckpt_path=last: {last} does not exist. Point hydra.run.dir at the run to resume "
                "(its checkpoints/ folder holds last.ckpt), or pass ckpt_path=/path/to/file.ckpt."
            )
        log.warning("requeued SLURM job without %s: starting at step 0", last)
        return None
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} does not exist; pass a checkpoint written by train.py "
                                "or ckpt_path=last with hydra.run.dir=<the run to resume>")
    return ckpt_path
