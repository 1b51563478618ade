"""The evaluation run behind eval.py: rebuild the model from a checkpoint's config and validate it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, open_dict

from vitadapter.checkpoint import TrainedCheckpoint
from vitadapter.data.bad_samples.bad_sample_report import bad_sample_report
from vitadapter.run.build import build_datamodule_and_task, build_trainer
from vitadapter.run.run_files import write_metrics_json
from vitadapter.utils.params import parameter_counts

log = logging.getLogger(__name__)


def register_restored_config(argv: list[str]) -> None:
    """Registers the config of the checkpoint named by `ckpt_path=` in `argv` as the `restored: checkpoint` default.

    Entry points call this before Hydra composes their config (eval.yaml, predict.yaml), so that the
    restored model/data keys exist and can be overridden on the command line. Without `ckpt_path=`
    nothing is registered and Hydra reports the missing mandatory key; nor with a list of checkpoints
    (predict.py), each of which keeps its own config.
    """
    for arg in argv:
        if arg.startswith("ckpt_path="):
            value = arg.split("=", 1)[1]
            if value.startswith("["):
                return  # several checkpoints (predict.py): each is rebuilt from its own config
            config = TrainedCheckpoint.read(value, f"ckpt_path={value!r}").run_config
            ConfigStore.instance().store(group="restored", name="checkpoint", node=config, package="_global_")
            return


ACCELERATOR_OF_DEVICE = {"cuda": "gpu", "mps": "mps", "cpu": "cpu"}


def device_available(device_type: str) -> bool:
    """Whether this machine has a device of `device_type` ("cuda", "mps", "cpu")."""
    if device_type == "cuda":
        return torch.cuda.is_available()
    if device_type == "mps":
        return torch.backends.mps.is_available()
    return device_type == "cpu"


def evaluation_accelerator(choice: str, trained_on: str | None) -> tuple[str, str]:
    """The Lightning accelerator eval.py runs on, and why.

    Args:
        choice: `eval.accelerator`: "checkpoint", or an accelerator name to use as given.
        trained_on: the device type recorded in the checkpoint ("cuda", "cpu", ...; None for
            checkpoints written before it was recorded).

    Returns:
        (accelerator, reason), e.g. ("gpu", "the checkpoint was trained on cuda").
    """
    if choice != "checkpoint":
        return choice, "eval.accelerator=" + choice
    if trained_on is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return ACCELERATOR_OF_DEVICE[device], f"the checkpoint does not record its device; {device} is what this machine has"
    if device_available(trained_on):
        return ACCELERATOR_OF_DEVICE.get(trained_on, "cpu"), f"the checkpoint was trained on {trained_on}"
    return "cpu", f"the checkpoint was trained on {trained_on}, which this machine does not have"


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """Validates a checkpoint and writes metrics.json (and predictions) into the run directory.

    Args:
        cfg: the composed eval.yaml config with the checkpoint's model/data sections.

    Returns:
        The flat metrics written to metrics.json (with the validation images scored and the bad files
        skipped: see `BadSampleReport`).
    """
    if not isinstance(cfg.ckpt_path, str):
        raise ValueError(f"ckpt_path={cfg.ckpt_path}: eval.py evaluates one checkpoint; run it once per checkpoint")
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    if "inference" in cfg.model:
        with open_dict(cfg):
            cfg.model.inference.flip = cfg.eval.tta.flip
            cfg.model.inference.scales = list(cfg.eval.tta.scales)
    elif cfg.eval.tta.flip or list(cfg.eval.tta.scales) != [1.0]:
        raise ValueError(f"eval.tta (flip / scales) is implemented for segmentation only; {cfg.model._target_} "
                         "has no test-time augmentation: leave eval.tta at its defaults")
    checkpoint = TrainedCheckpoint.read(cfg.ckpt_path, f"ckpt_path={cfg.ckpt_path!r}")
    datamodule, task = build_datamodule_and_task(cfg)
    checkpoint.load_into(task)
    callbacks: list[L.Callback] = []
    if cfg.eval.save_predictions:
        callbacks.append(task.prediction_writer(output_dir / "predictions", datamodule))
    accelerator, reason = evaluation_accelerator(cfg.eval.accelerator, checkpoint.trained_on)
    log.info("evaluating on %s (%s)", accelerator, reason)
    trainer = build_trainer(cfg, callbacks=callbacks, logger=False, accelerator=accelerator)
    trainer.validate(task, datamodule=datamodule, verbose=False)
    metrics = {**task.summary_metrics(), **bad_sample_report(trainer).metrics(training=False),
               **parameter_counts(task)}
    if trainer.is_global_zero:
        print(task.results_table())
        write_metrics_json(metrics, output_dir / "metrics.json")
        log.info("wrote %s", output_dir / "metrics.json")
    return metrics
