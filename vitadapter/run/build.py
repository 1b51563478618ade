"""Turns a composed Hydra config into the datamodule, task, callbacks, loggers and trainer."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from vitadapter.data.bad_samples.bad_sample_report import BadSampleReport
from vitadapter.run.checkpoint_io import AtomicCheckpointIO

RUN_CONFIG_KEYS = ("model", "data", "monitor")


def default_task_name() -> str | None:
    """The name of the running experiment (`experiment=NAME`), which names its model among several tasks; None
    outside a Hydra run or without an experiment (the task then names itself by its kind)."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment")


def build_datamodule_and_task(
    cfg: DictConfig, check_data: bool = False
) -> tuple[L.LightningDataModule, L.LightningModule]:
    """Instantiates `cfg.data` and `cfg.model` and wires them together.

    With `check_data` (train.py), the datamodule's `check_data()` reports a missing dataset folder before
    the model, and its pretrained weights, are built or downloaded. (Not for eval.py yet: `check_data`
    checks both splits, and evaluation needs only the validation one.)

    The task gets the datamodule's class names (and its `isthing` where `model.isthing` is null); the datamodule
    normalises with the backbone's own mean/std unless `data.mean`/`data.std` are set; the task keeps the resolved
    model/data config (with the class names and colours a `classes.txt` gave) so that its checkpoints can rebuild
    it (and the trainer's precision, so that evaluating a checkpoint computes with the arithmetic its
    training-end validation used). An unset `model.task_name` becomes the experiment's name.

    Args:
        cfg: the composed run config (train.yaml or eval.yaml).
        check_data: check the dataset's files first (prediction and export do not read them).

    Returns:
        (datamodule, task).
    """
    datamodule = instantiate(cfg.data)
    if check_data and hasattr(datamodule, "check_data"):
        datamodule.check_data()
    if "task_name" in cfg.model and cfg.model.task_name is None:
        with open_dict(cfg):
            cfg.model.task_name = default_task_name()
    # depth datasets have no classes; a panoptic model's `isthing: null` takes the dataset's things and stuff
    task = instantiate(cfg.model, class_names=getattr(datamodule, "class_names", None),
                       **_dataset_isthing(cfg, datamodule))
    if cfg.data.get("mean") is None or cfg.data.get("std") is None:
        datamodule.set_normalization(task.backbone.mean, task.backbone.std)
    task.run_config = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in RUN_CONFIG_KEYS if key in cfg}
    if getattr(datamodule, "classes_from_file", False):
        # classes read from the dataset's classes.txt go into the checkpoint: it rebuilds without the dataset
        palette = None if datamodule.palette is None else [list(colour) for colour in datamodule.palette]
        task.run_config["data"].update(class_names=list(datamodule.class_names), palette=palette)
    if "trainer" in cfg:
        task.run_config["trainer"] = {"precision": cfg.trainer.precision}
    return datamodule, task


def _dataset_isthing(cfg: DictConfig, datamodule: L.LightningDataModule) -> dict[str, list[bool]]:
    """`{"isthing": the datamodule's}` for a model whose `isthing` is null, else nothing."""
    if "isthing" not in cfg.model or cfg.model.isthing is not None:
        return {}
    if not hasattr(datamodule, "isthing"):
        raise ValueError(f"model.isthing is null, so the data must say which classes are things, and "
                         f"{type(datamodule).__name__} does not: use a panoptic dataset (data=coco_panoptic, "
                         "data=synthetic_panoptic) or set model.isthing")
    return {"isthing": list(datamodule.isthing)}


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    """Instantiates the trainer with the configured callbacks and loggers; every checkpoint it saves is
    written atomically (`AtomicCheckpointIO`, which the trainer hands to its strategy, DDP included).
    A `BadSampleReport` is added to any callbacks, so skipped bad files always reach metrics.json."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    kwargs: dict[str, Any] = {"callbacks": callbacks, "logger": loggers or False, "plugins": [AtomicCheckpointIO()]}
    kwargs.update(overrides)
    kwargs["callbacks"] = [*kwargs["callbacks"], BadSampleReport()]
    return instantiate(cfg.trainer, **kwargs)
