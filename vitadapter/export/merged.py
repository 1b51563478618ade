"""A trained checkpoint -> the plain timm state dict of its ViT, with the PEFT method folded into the weights.

Linear methods (LoRA, DoRA and the mergeable peft tuners, SSF) merge into the frozen weights
(`Encoder.merge`); methods that train the ViT's own tensors (BitFit, LayerNorm tuning, full fine-tuning)
leave a plain timm model as they are. Either way the result loads with timm alone:

    timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": FILE}, **model_kwargs)

Methods that add modules timm does not have (bottleneck adapters, Convpass, prompts) cannot be exported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from vitadapter.checkpoint import TrainedCheckpoint
from vitadapter.encoder import Encoder
from vitadapter.run.trained import load_trained

log = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def load_trained_task(ckpt_path: str | Path | TrainedCheckpoint, overrides: Sequence[str] = ()) -> L.LightningModule:
    """Rebuilds the task a train.py checkpoint was trained as and loads its weights (as eval.py does).

    The frozen ViT is built in float32 whatever `model.backbone.frozen_dtype` it trained with: exported weights
    and graphs are float32 (ONNX Runtime's CPU kernels have no bfloat16 convolution), and the checkpoint loads
    because the fingerprint does not depend on the frozen dtype. An override given here still wins.

    Args:
        ckpt_path: a checkpoint written by train.py (or the `TrainedCheckpoint` already read).
        overrides: dotted `key=value` changes of the restored config (e.g. `model.backbone.checkpoint=...`
            when the pretrained weights moved).

    Returns:
        The task in eval mode, its trained tensors loaded and its frozen backbone verified.
    """
    return load_trained(ckpt_path, ["model.backbone.frozen_dtype=float32", *overrides])[1]


def merged_vit_state_dict(encoder: Encoder) -> dict[str, Tensor]:
    """Merges the encoder's method (when it can) and returns its ViT's state dict, which timm's model loads.

    Args:
        encoder: a trained encoder (it is merged in place).

    Returns:
        The ViT's state dict (contiguous CPU copies), keys exactly as timm names them.
    """
    method = encoder.method
    name = method.method_name if method is not None else "none"
    if method is not None and method.mergeable:
        encoder.merge()
    backbone = encoder.backbone
    added = [n for n, m in backbone.vit.named_modules() if not backbone.is_pretrained_module(m)]
    if added or encoder.hooks is not None:
        where = f"modules timm does not have ({', '.join(added[:3])}, ...)" if added else "tokens outside the ViT"
        raise ValueError(
            f"model.adapter.name={name!r} cannot be exported as a plain timm model: it adds {where} and does "
            "not merge into the weights. Export works for methods that merge (lora, dora, peft, ssf) and for "
            "those that train the ViT's own tensors (bitfit, norm, full)."
        )
    if method is None or name == "none":
        log.warning("model.adapter.name=%r trains nothing inside the ViT: the export holds the frozen weights", name)
    return {key: value.detach().cpu().contiguous().clone() for key, value in backbone.vit.state_dict().items()}


def _checked_suffix(output: str | Path) -> str:
    suffix = Path(output).suffix.lower()
    if suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise ValueError(f"output={str(output)!r}: name the file *.safetensors or *{', *'.join(TORCH_SUFFIXES)}")
    return suffix


def save_state_dict(state: dict[str, Tensor], output: str | Path) -> Path:
    """Writes `state` as safetensors (`.safetensors`) or with torch.save (`.pth`, `.pt`, `.bin`)."""
    path = Path(output)
    suffix = _checked_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt"})
    else:
        torch.save(state, path)
    return path


def timm_create_call(encoder: Encoder, output: str | Path) -> str:
    """The timm call that rebuilds the exported ViT from `output`."""
    backbone = encoder.backbone
    kwargs = "".join(f", {key}={value!r}" for key, value in backbone.model_kwargs.items())
    return (f"timm.create_model({backbone.name!r}, pretrained=True, num_classes=0, "
            f"pretrained_cfg_overlay={{'file': {str(output)!r}}}{kwargs})")


def export_merged(ckpt_path: str | Path, output: str | Path, overrides: Sequence[str] = ()) -> tuple[Path, str]:
    """Loads a train.py checkpoint, merges its method and writes the ViT as a plain timm state dict.

    Args:
        ckpt_path: a checkpoint written by train.py.
        output: the file to write (*.safetensors, *.pth, *.pt or *.bin).
        overrides: dotted `key=value` changes of the checkpoint's config.

    Returns:
        The written path and the timm call that loads it.
    """
    _checked_suffix(output)  # before the model is built
    task = load_trained_task(ckpt_path, overrides)
    path = save_state_dict(merged_vit_state_dict(task.encoder), output)
    return path, timm_create_call(task.encoder, path)
