"""The pretraining run behind scripts/pretrain_backbone.py: write the upstream set, train, save timm weights."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vitadapter.backbone.fingerprint import WeightsHasher
from vitadapter.pretrain.weights_file import save_backbone_weights
from vitadapter.run.checkpoint_io import AtomicCheckpointIO
from vitadapter.run.resume import resume_checkpoint
from vitadapter.run.run_files import plot_training_curves, write_metrics_json

log = logging.getLogger(__name__)


def run_pretraining(cfg: DictConfig) -> dict[str, Any]:
    """Pretrains the ViT of `cfg.pretrain` on the upstream set of `cfg.data` and writes its weights to `cfg.output`.

    Args:
        cfg: the composed pretrain.yaml config.

    Returns:
        The metrics written to the run's `metrics.json`: the final validation (`val/*`), the training time
        (`pretrain/fit_s`), the weights file (`pretrain/weights`) and its fingerprint (`pretrain/fingerprint`, the
        one `model.backbone.checkpoint=FILE` gives the backbone).
    """
    if not str(cfg.get("output") or "").endswith(".safetensors"):  # checked before, not after, half an hour
        raise ValueError(f"output={cfg.get('output')!r}: give the weights file to write, a path ending in .safetensors")
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    task = instantiate(cfg.pretrain)
    data_cfg = task.vit.pretrained_cfg
    datamodule.mean, datamodule.std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, plugins=[AtomicCheckpointIO()])
    trainable = sum(p.numel() for p in task.parameters() if p.requires_grad)
    log.info("pretraining %s (%d trainable parameters, the pixel head included) for %d steps", cfg.pretrain.name,
             trainable, cfg.trainer.max_steps)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    started = time.perf_counter()
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg.get("ckpt_path"), output_dir))
    fit_s = time.perf_counter() - started
    state = task.backbone_state()
    fingerprint = weights_fingerprint(state)
    metadata = {"timm_name": cfg.pretrain.name, "model_kwargs": OmegaConf.to_container(cfg.pretrain.model_kwargs),
                "seed": cfg.seed, "steps": trainer.global_step, "upstream": OmegaConf.to_container(cfg.data.synthetic),
                "fingerprint": fingerprint}
    weights = save_backbone_weights(state, cfg.output, metadata)
    validation = trainer.validate(task, datamodule=datamodule, verbose=False)[0]
    metrics = {**validation, "pretrain/fit_s": fit_s, "pretrain/steps": trainer.global_step,
               "pretrain/weights": str(weights), "pretrain/fingerprint": fingerprint}
    write_metrics_json(metrics, output_dir / "metrics.json")
    csv_file = output_dir / "csv" / "metrics.csv"
    if csv_file.is_file():
        plot_training_curves(csv_file, output_dir / "training_curves.png", metric=cfg.monitor.metric)
    log.info("pretrained weights: %s (fingerprint %s), %d steps in %.1f min; use them with "
             "model.backbone.checkpoint=%s, or model/backbone=vit_tiny_shapes", weights, fingerprint[:16],
             trainer.global_step, fit_s / 60, weights)
    return metrics


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """The fingerprint a backbone built from these weights has (`vitadapter.backbone.fingerprint`)."""
    hasher = WeightsHasher()
    for name in sorted(state):
        hasher.add(name, state[name])
    return hasher.hexdigest()
