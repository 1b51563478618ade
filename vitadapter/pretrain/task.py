"""The pretraining LightningModule: a whole timm ViT (every weight trains) and the dense upstream objective."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer

from vitadapter.backbone.build import create_seeded, timm_arguments
from vitadapter.pretrain.objective import DensePixelHead, FactorLoss


class PretrainTask(L.LightningModule):
    """Trains a timm ViT from its seeded random init on the upstream set (`vitadapter.pretrain.objective`).

    Args:
        name: the timm model name.
        model_kwargs: timm constructor arguments (e.g. the demos' patch_size 8, depth 4, img_size 128).
        seed: initialisation seed of the ViT and the head.
        subpixels: pixels predicted per patch side.
        colour_weight: weight of the colour factor in the loss.
        optimizer: `params -> optimiser` (timm's `create_optimizer_v2`, partial), given this module.
        scheduler: `(optimiser, total_steps) -> per-step scheduler` (partial), or None.

    Attributes:
        vit: the timm model, headless (`num_classes=0`), built as `ViTBackbone` builds it.
    """

    def __init__(self, name: str, model_kwargs: dict[str, Any], seed: int, subpixels: int = 4,
                 colour_weight: float = 0.5, optimizer: Callable[..., Optimizer] | None = None,
                 scheduler: Callable[..., Any] | None = None) -> None:
        super().__init__()
        _, kwargs = timm_arguments(name, False, None, model_kwargs)
        with torch.random.fork_rng(devices=[]):
            self.vit = create_seeded(name, False, seed, kwargs)
            patch = self.vit.patch_embed.patch_size
            self.head = DensePixelHead(self.vit.embed_dim, patch[0], subpixels)
        self.loss = FactorLoss(self.head.stride, colour_weight)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def forward(self, images: Tensor) -> Tensor:
        """Images B×3×H×W -> factor logits B×C×(h·s)×(w·s) over the patch grid h×w."""
        tokens = self.vit.forward_features(images)[:, self.vit.num_prefix_tokens:]
        return self.head(tokens, self.vit.patch_embed.dynamic_feat_size(images.shape[-2:]))

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        loss, parts = self.loss(self(batch["image"]), batch["labels"])
        size = batch["image"].shape[0]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, batch_size=size, on_step=on_step, on_epoch=not on_step)
        for key, value in parts.items():
            self.log(f"{stage}/{key}", value, batch_size=size, on_step=on_step, on_epoch=not on_step)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss is {loss.item()} at step {self.global_step}: lower "
                                     "pretrain.optimizer.lr or use trainer.precision=32-true")
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def no_weight_decay(self) -> set[str]:
        """The ViT's own no-decay tensors (timm's rule: tokens and position embeddings; norms and biases by shape)."""
        return {f"vit.{name}" for name in self.vit.no_weight_decay()}

    def configure_optimizers(self) -> dict[str, Any]:
        if self.optimizer_factory is None:
            raise ValueError("PretrainTask needs an optimizer (pretrain.optimizer in the config)")
        optimizer = self.optimizer_factory(self)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def backbone_state(self) -> dict[str, Tensor]:
        """The ViT's weights as timm names them (no pretraining head), contiguous float32 copies."""
        return {name: tensor.detach().float().contiguous().clone() for name, tensor in self.vit.state_dict().items()}

