"""Checkpoints that hold only what trains, plus a fingerprint of the frozen weights they need."""

from __future__ import annotations

from typing import Any

from torch import nn

from vitadapter.backbone import ViTBackbone


class BackboneMismatchError(RuntimeError):
    """A checkpoint was trained on different frozen weights than the backbone it is loaded onto."""


def _backbone_prefix(model: nn.Module, backbone: ViTBackbone) -> str:
    for name, module in model.named_modules():
        if module is backbone:
            return f"{name}." if name else ""
    raise ValueError("the backbone is not a submodule of the task")


class FrozenBackboneCheckpointing:
    """LightningModule mixin: strip the frozen ViT from checkpoints and verify it on load.

    The host defines `self.backbone` (a `ViTBackbone`) and may set `self.run_config`, the resolved
    run configuration stored in the checkpoint so that `eval.py` can rebuild the model from it.
    """

    backbone: ViTBackbone
    run_config: dict[str, Any] | None = None

    def _frozen_keys(self) -> list[str]:
        prefix = _backbone_prefix(self, self.backbone)  # type: ignore[arg-type]
        return [prefix + key for key in self.backbone.frozen_state_keys()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drops the frozen backbone weights and records their fingerprint and the run config."""
        frozen = set(self._frozen_keys())
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}
        checkpoint["vitadapter"] = {
            "backbone_name": self.backbone.name,
            "backbone_fingerprint": self.backbone.fingerprint,
            "config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a different backbone, then fills the frozen weights in from the live model."""
        meta = checkpoint.get("vitadapter")
        if meta is None:
            raise ValueError("this checkpoint was not written by vitadapter (no 'vitadapter' entry)")
        expected, actual = meta["backbone_fingerprint"], self.backbone.fingerprint
        if expected != actual:
            raise BackboneMismatchError(
                f"the checkpoint was trained on backbone {meta['backbone_name']!r} with weights fingerprint "
                f"{expected[:16]}, but this model's backbone {self.backbone.name!r} has fingerprint {actual[:16]}. "
                "Load it onto the same frozen weights (same model.backbone.name, pretrained, checkpoint and seed)."
            )
        live = self.state_dict()  # type: ignore[attr-defined]
        state = checkpoint["state_dict"]
        for key in self._frozen_keys():
            state[key] = live[key]
