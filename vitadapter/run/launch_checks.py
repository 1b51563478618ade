"""Refuses launch combinations that cannot work, before anything is built."""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


def uses_multiple_processes(trainer: DictConfig) -> bool:
    """Whether the trainer config asks Lightning for a multi-process (DDP-family) strategy."""
    strategy = trainer.get("strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy or "")
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1) or 1
    many = devices not in (1, "1", [0]) or int(nodes) > 1
    return ("ddp" in target.lower() or "fsdp" in target.lower()) and many


def refuse_ddp_sweep_on_basic_launcher(cfg: DictConfig) -> None:
    """Refuses `-m` with a DDP trainer under Hydra's basic launcher.

    Lightning's DDP launcher starts the other ranks by re-running `sys.argv`, `-m` and the swept values
    included, so every rank would start a sweep of its own. The submitit launchers start one job per
    sweep point, each with its ranks as SLURM tasks (or local processes), which Lightning joins
    without re-spawning.

    Raises:
        ValueError: for that combination, naming the launchers to use instead.
    """
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    launcher = hydra_cfg.runtime.choices.get("hydra/launcher")
    if hydra_cfg.mode == RunMode.MULTIRUN and launcher in (None, "basic") and uses_multiple_processes(cfg.trainer):
        raise ValueError(
            "a sweep (-m) with a multi-process trainer (trainer=ddp / ddp_sim, devices != 1) cannot run under Hydra's "
            "basic launcher: Lightning re-runs the command line in every rank, so each rank would start the whole "
            "sweep. Use hydra/launcher=slurm (SLURM, one task per GPU; see the README) or "
            "hydra/launcher=submitit_local, or sweep with a single-process trainer."
        )
