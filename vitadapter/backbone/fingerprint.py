"""A content hash of frozen weights, so a checkpoint can refuse a backbone it was not trained on.

A backbone's fingerprint hashes its weights as loaded, in the dtype timm builds them in (float32), before they are
cast to `model.backbone.frozen_dtype` (`vitadapter.backbone.build`): a bfloat16 and a float32 build of the same
weights have the same fingerprint, so a checkpoint trained on one loads onto the other.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


class WeightsHasher:
    """Builds a fingerprint one tensor at a time, so a model built tensor by tensor never needs all of them at once.

    Tensors must come in sorted name order; the digest then equals `state_fingerprint` of a module whose state
    dict holds exactly these tensors.
    """

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._last: str | None = None

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Hashes one state-dict entry (its name, dtype, shape and values)."""
        if self._last is not None and name <= self._last:
            raise ValueError(f"weights must be hashed in sorted name order: {name!r} came after {self._last!r}")
        self._last = name
        flat = tensor.detach().to("cpu").contiguous()
        self._digest.update(f"{name}|{flat.dtype}|{tuple(flat.shape)}|".encode())
        # a uint8 view gives the raw bytes for every dtype, bfloat16 included (numpy has no bfloat16)
        self._digest.update(flat.reshape(-1).view(torch.uint8).numpy())

    def hexdigest(self) -> str:
        """The 64-character hex SHA-256 of everything added."""
        return self._digest.hexdigest()


def state_fingerprint(module: nn.Module) -> str:
    """Hashes every tensor of a module's state dict (names, dtypes, shapes and values).

    Args:
        module: the module whose weights identify it, e.g. a freshly created timm ViT.

    Returns:
        A 64-character hex SHA-256 digest; equal digests mean bit-identical weights.
    """
    hasher = WeightsHasher()
    for name, tensor in sorted(module.state_dict().items()):
        hasher.add(name, tensor)
    return hasher.hexdigest()


class BackboneMismatchError(RuntimeError):
    """Tensors were trained on different frozen weights than the backbone they are loaded onto."""


def check_trained_on(subject: str, trained_name: str | None, trained_fingerprint: str | None, target: str,
                     name: str | None, fingerprint: str | None,
                     error: type[Exception] = BackboneMismatchError) -> None:
    """Refuses `subject` (a checkpoint, a fusion source, ...) trained on other frozen weights than `target` has.

    Args:
        subject: what was trained, e.g. "the checkpoint", "fusion source A.ckpt".
        trained_name, trained_fingerprint: the backbone it records having been trained on.
        target: what it is loaded onto, e.g. "this model's backbone".
        name, fingerprint: that backbone.
        error: the exception to raise.
    """
    if trained_fingerprint != fingerprint:
        raise error(
            f"{subject} was trained on backbone {trained_name!r} with weights fingerprint {str(trained_fingerprint)[:16]}, "
            f"but {target} is {name!r} with fingerprint {str(fingerprint)[:16]}. Use the same frozen weights "
            "(same model.backbone.name, pretrained, checkpoint and seed)."
        )
