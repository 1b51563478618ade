"""A content hash of frozen weights, so a checkpoint can refuse a backbone it was not trained on."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def state_fingerprint(module: nn.Module) -> str:
    """Hashes every tensor of a module's state dict (names, dtypes, shapes and values).

    Args:
        module: the module whose weights identify it, e.g. a freshly created timm ViT.

    Returns:
        A 64-character hex SHA-256 digest; equal digests mean bit-identical weights.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{flat.dtype}|{tuple(flat.shape)}|".encode())
        # a uint8 view gives the raw bytes for every dtype, bfloat16 included (numpy has no bfloat16)
        digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
