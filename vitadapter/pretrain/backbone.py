"""The frozen backbone of the weights scripts/pretrain_backbone.py makes, with an error that says how to make them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vitadapter.backbone import ViTBackbone

MAKE_COMMAND = "python scripts/pretrain_backbone.py"


class PretrainedBackboneMissing(FileNotFoundError):
    """The weights file of a backbone pretrained on this machine has not been made yet."""

    def __repr__(self) -> str:  # Hydra reports an instantiation error by its repr: keep the lines readable
        return f"{type(self).__name__}: {self}"


def pretrained_vit(checkpoint: str, made_by: str = MAKE_COMMAND, device: str | torch.device = "cpu",
                   **kwargs: Any) -> ViTBackbone:
    """`ViTBackbone(checkpoint=checkpoint, ...)`, or, when the file is not there, an error naming the command that
    writes it.

    Args:
        checkpoint: the weights file (`output` of the pretraining run).
        made_by: the command that writes it.
        device: as `ViTBackbone` ("meta" builds the structure alone and needs no file).
        **kwargs: the other `ViTBackbone` arguments.
    """
    if torch.device(device).type != "meta" and not Path(checkpoint).is_file():
        raise PretrainedBackboneMissing(
            f"model.backbone.checkpoint={checkpoint} does not exist: it holds the weights pretrained on this machine "
            f"(model/backbone=vit_tiny_shapes). Make it with\n    {made_by}\n(about 30 minutes on 2 CPU cores; see "
            "docs/pretraining.md), or point model.backbone.checkpoint at a copy of the file."
        )
    return ViTBackbone(checkpoint=checkpoint, device=device, **kwargs)
