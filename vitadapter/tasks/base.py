"""What every task shares: frozen-backbone checkpoints and an optimiser over trainable parameters."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torchmetrics import Metric

from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.tasks.frozen_checkpoint import FrozenBackboneCheckpointing
from vitadapter.tasks.loss_guard import check_finite_loss
from vitadapter.tasks.optim import layer_decay_scales, trainable_param_groups
from vitadapter.tasks.sharding import shard_task


class FrozenBackboneTask(FrozenBackboneCheckpointing, L.LightningModule):
    """Base LightningModule of the tasks; subclasses set `encoder` and the two factories.

    Attributes:
        encoder: the frozen ViT + PEFT method + neck.
        optimizer_factory: builds the optimiser from parameter groups (a Hydra partial).
        scheduler_factory: builds the per-step lr schedule from the optimiser and `total_steps`, or None.
        last_val_results: the results of the last validation (None before any), which `summary_metrics` and
            `results_table` read.
    """

    encoder: Encoder
    optimizer_factory: Callable[..., torch.optim.Optimizer]
    scheduler_factory: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None
    last_val_results: Any = None

    def keep_validation_results(self, metrics: Metric) -> dict[str, torch.Tensor]:
        """Computes and resets a validation metric, keeping its results (on the CPU) as `last_val_results`."""
        results = metrics.compute()
        metrics.reset()
        self.last_val_results = {k: v.detach().cpu() for k, v in results.items()}
        return results

    def validation_results(self) -> Any:
        """`last_val_results`; raises RuntimeError before any validation has run."""
        if self.last_val_results is None:
            raise RuntimeError("no validation has run yet")
        return self.last_val_results

    @property
    def backbone(self) -> ViTBackbone:
        """The frozen ViT (for checkpointing and its normalisation)."""
        return self.encoder.backbone

    def optimizer_setting(self, key: str) -> Any:
        """A setting of `model.optimizer` (the partial's keyword, else the optimiser function's default, else None)."""
        factory = self.optimizer_factory
        if key in getattr(factory, "keywords", {}):
            return factory.keywords[key]
        parameter = inspect.signature(getattr(factory, "func", factory)).parameters.get(key)
        return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default

    def method_param_lr(self) -> dict[int, float]:
        """Learning rates of the PEFT method's tensors that differ from the optimiser's.

        The method's own `lr` (when set) replaces the optimiser's for its tensors, so an experiment's
        `model.optimizer.lr` does not overwrite it; layer-wise decay (`model.optimizer.layer_decay`)
        multiplies either for the tensors inside the ViT.
        """
        layer_decay = self.optimizer_setting("layer_decay")
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ValueError(f"model.optimizer.layer_decay must be in (0, 1] (1.0 or null: off), got {layer_decay}")
        method = self.encoder.method
        if method is None:
            return {}  # nothing trains inside the ViT
        scales = layer_decay_scales(self.backbone, layer_decay) if layer_decay not in (None, 1.0) else {}
        if method.lr is None and not scales:
            return {}  # the optimiser's own lr for everything: one group per weight-decay setting
        lr = method.lr if method.lr is not None else self.optimizer_setting("lr")
        if lr is None:
            raise ValueError("model.optimizer has no lr to scale; set model.optimizer.lr or model.adapter.lr")
        return {id(p): lr * scales.get(id(p), 1.0) for p in self.encoder.method_parameters()}

    def configure_model(self) -> None:
        """Under a sharding strategy (`trainer=fsdp`: Lightning gives the task a device mesh), shards the frozen trunk
        and the trained parts across the processes (`vitadapter.tasks.sharding`); otherwise nothing."""
        mesh = self.device_mesh
        if mesh is not None:
            shard_task(self, mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh)

    def configure_optimizers(self) -> dict[str, Any]:
        """The configured optimiser over trainable parameters only (timm's weight-decay rules); lr set every step."""
        weight_decay = self.optimizer_setting("weight_decay") or 0.0
        groups = trainable_param_groups(self, weight_decay=weight_decay, param_lr=self.method_param_lr())
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def checked_loss(self, loss: torch.Tensor, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        """The training loss, after stopping the run if it (on any rank) is not finite (see `check_finite_loss`)."""
        check_finite_loss(self._trainer, loss, batch, batch_idx)
        return loss

    def on_validation_start(self) -> None:
        """Merges a mergeable method into the frozen weights when `model.adapter.merge=true` (eval.py)."""
        method = self.encoder.method
        if method is not None and method.merge and not self.encoder.merged:
            self.encoder.merge()
