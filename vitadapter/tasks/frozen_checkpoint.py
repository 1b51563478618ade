"""Checkpoints that hold exactly what trains, plus a fingerprint of the frozen weights they need."""

from __future__ import annotations

from typing import Any

from vitadapter.adapters.base import LoadedFrozenModules, MethodConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.backbone.fingerprint import BackboneMismatchError
from vitadapter.checkpoint import META_KEY, TrainedCheckpoint, vitadapter_entry

__all__ = ["BackboneMismatchError", "FrozenBackboneCheckpointing"]


class FrozenBackboneCheckpointing:
    """LightningModule mixin: leave the frozen ViT out of checkpoints and verify it on load.

    The frozen set is the ViT's tensors as built (`ViTBackbone.is_frozen_tensor`) that do not
    train now, plus the tensors a method loaded frozen from other checkpoints (`LoadedFrozenModules`,
    verified through the method's `checkpoint_record`). Everything else in the state dict is saved:
    the method's tensors wherever they sit (adapters, LoRA matrices, prompts, unfrozen biases, the
    whole ViT for full fine-tuning), the neck and the heads. The host defines `self.backbone` (and
    `self.encoder` when it has a method) and may set `self.run_config`, the resolved run configuration
    stored in the checkpoint so that `eval.py` can rebuild the model from it.
    """

    backbone: ViTBackbone
    run_config: dict[str, Any] | None = None

    @property
    def peft_method(self) -> MethodConfig | None:
        """The PEFT method placed on the backbone (None without an encoder or a method)."""
        return getattr(getattr(self, "encoder", None), "method", None)

    def frozen_state_keys(self) -> list[str]:
        """State-dict keys of the frozen set (they are filled from the live model on load)."""
        state = self.state_dict(keep_vars=True)  # type: ignore[attr-defined]
        modules = self.modules()  # type: ignore[attr-defined]
        loaded = {id(tensor) for module in modules if isinstance(module, LoadedFrozenModules)
                  for tensor in (*module.parameters(), *module.buffers())}
        return [key for key, tensor in state.items() if self.backbone.is_frozen_tensor(tensor) or id(tensor) in loaded]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drops the frozen backbone weights and records their fingerprint, the run config and the class names."""
        frozen = set(self.frozen_state_keys())
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}
        method = self.peft_method
        checkpoint[META_KEY] = vitadapter_entry(self.backbone.name, self.backbone.fingerprint, self.run_config,
                                                method.checkpoint_record() if method is not None else {},
                                                getattr(self, "class_names", None))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a different backbone, then fills the frozen weights in from the live model."""
        trained = TrainedCheckpoint(checkpoint)
        trained.check_trained_on(self.backbone)
        if self.peft_method is not None:
            self.peft_method.check_checkpoint_record(trained.method_record)
        live = self.state_dict()  # type: ignore[attr-defined]
        state = checkpoint["state_dict"]
        for key in self.frozen_state_keys():
            state[key] = live[key]
