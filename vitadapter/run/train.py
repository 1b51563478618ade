"""The training run behind train.py: fit, save the final weights, validate them, write the run files."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from vitadapter.callbacks.preemption import Preemption
from vitadapter.cost import run_cost
from vitadapter.data.bad_samples.bad_sample_report import bad_sample_report
from vitadapter.run.build import build_datamodule_and_task, build_trainer
from vitadapter.run.launch_checks import refuse_ddp_sweep_on_basic_launcher
from vitadapter.run.resume import resume_checkpoint
from vitadapter.run.run_files import plot_training_curves, write_metrics_json
from vitadapter.run.warm_start import warm_start
from vitadapter.utils.params import parameter_counts

log = logging.getLogger(__name__)

# the frozen ViT stays in eval mode on purpose (no dropout/drop-path in frozen parts)
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")


def release_training_state(trainer: L.Trainer) -> None:
    """Frees the gradients and the optimiser state once the final checkpoint holds them: the final validation reads
    that checkpoint back (optimiser state included), and would otherwise hold both copies at once (for a 7B trunk's
    neck and heads, 2.4 GB more at the run's peak)."""
    trainer.lightning_module.zero_grad(set_to_none=True)
    for optimizer in trainer.optimizers:
        optimizer.state.clear()


def run_training(cfg: DictConfig) -> dict[str, Any]:
    """Trains, then validates the weights saved in `checkpoints/last.ckpt`.

    A run stopped by a signal (see `Preemption`) has saved `checkpoints/last.ckpt` at the step it
    reached and returns at once: no final validation, no `metrics.json`.

    Args:
        cfg: the composed train.yaml config.

    Returns:
        The flat metrics written to `metrics.json` (val/* of the final weights, params/*, the run's
        cost perf/*, ckpt/size_mb: see `vitadapter.cost.run_cost`, and the bad files skipped, data/skipped_*: see
        `BadSampleReport`); empty when preempted.
    """
    if cfg.model.get("adapter") and cfg.model.adapter.get("merge"):
        raise ValueError("model.adapter.merge=true merges a trained method into the frozen weights for evaluation; "
                         "use it with eval.py (or scripts/export_merged.py), not train.py")
    refuse_ddp_sweep_on_basic_launcher(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule, task = build_datamodule_and_task(cfg, check_data=True)
    init_from = cfg.get("init_from") or {}
    if init_from.get("ckpt_path"):
        warm_start(task, init_from.ckpt_path, list(init_from.get("parts") or ["adapter"]))
    trainer = build_trainer(cfg)
    # eval.py evaluates on this device type when its machine has one
    task.run_config["trained_on"] = trainer.strategy.root_device.type
    params = parameter_counts(task)
    log.info("parameters: %d trainable of %d (%.2f%%): adapter %d, neck %d, head %d", params["params/trainable"],
             params["params/total"], params["params/trainable_pct"], params["params/trainable_adapter"],
             params["params/trainable_neck"], params["params/trainable_head"])
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg.get("ckpt_path"), output_dir))
    preemption = next((c for c in trainer.callbacks if isinstance(c, Preemption)), None)
    if preemption is not None and preemption.stopped_at_step is not None:
        if trainer.is_global_zero:
            log.warning("training stopped by %s before max_steps: no final validation, no metrics.json",
                        preemption.signal_name)
        return {}
    # ModelCheckpoint's last.ckpt lags the final step when max_steps is not a validation step:
    # save the final weights explicitly, then validate exactly those.
    last = output_dir / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(last)
    release_training_state(trainer)
    trainer.validate(task, datamodule=datamodule, ckpt_path=str(last), verbose=False, weights_only=True)

    metrics = {**task.summary_metrics(), **bad_sample_report(trainer).metrics(), **params,
               **run_cost(trainer, task, datamodule, last)}
    if trainer.is_global_zero:
        log.info("final validation of %s:\n%s", last, task.results_table())
        write_metrics_json(metrics, output_dir / "metrics.json")
        for logger in trainer.loggers:
            logger.save()
        csv_file = output_dir / "csv" / "metrics.csv"
        if csv_file.is_file():
            plot_training_curves(csv_file, output_dir / "training_curves.png", metric=cfg.monitor.metric)
        written = sorted(p.name + "/" * p.is_dir() for p in output_dir.iterdir() if not p.name.startswith("."))
        log.info("outputs: %s (%s)", output_dir, ", ".join(written))
    return metrics
