"""The dtype a frozen ViT's weights are kept in (`model.backbone.frozen_dtype`), and how they compute in it.

`bfloat16` halves a frozen trunk's memory (a 7B DINOv3 in 13.4 GB instead of 27 GB) without touching what trains:

* **Which tensors.** The weight matrices and embeddings (every parameter and persistent buffer with two or more
  dimensions: Linear and patch-embedding weights, class/register tokens, position embeddings) are kept in the
  frozen dtype. Vectors (biases, norm scales and shifts, LayerScale gammas) stay float32: they are 0.06% of a
  7B's bytes, keep every LayerNorm exact, and are what BitFit and norm tuning train, so those methods train float32
  tensors as they are. Derived buffers (RoPE periods, index tables) stay as timm builds them.
* **What trains is float32.** A method's own modules are built in float32; a frozen matrix that a method unfreezes
  (`model/adapter=full`) becomes a float32 master copy of the stored values first (`master_copy`).
* **How it computes.** Under autocast (`trainer.precision=bf16-mixed`) nothing changes: autocast already runs the
  matrix products in bfloat16 and the norms in float32. In a run without autocast (`32-true`) the frozen embedding
  and blocks (and what a method placed inside them) run under autocast to the frozen dtype (`frozen_compute`), so
  a float32 input meets a bfloat16 weight exactly as in a mixed-precision run, and their outputs return in the
  input's dtype. (Upcasting the weights instead would keep float32 copies of every block alive for the backward
  pass, the memory this setting saves.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

FROZEN_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_frozen_dtype(value: str | torch.dtype) -> torch.dtype:
    """`model.backbone.frozen_dtype` ("float32", "bfloat16", "float16", or a torch dtype) as a torch dtype."""
    if isinstance(value, torch.dtype) and value in FROZEN_DTYPES.values():
        return value
    key = str(value).removeprefix("torch.")
    if key not in FROZEN_DTYPES:
        raise ValueError(f"model.backbone.frozen_dtype={value!r}: choose one of {', '.join(FROZEN_DTYPES)}")
    return FROZEN_DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """"bfloat16" for torch.bfloat16 (the config's spelling)."""
    return str(dtype).removeprefix("torch.")


def is_low_precision(dtype: torch.dtype) -> bool:
    """Whether `dtype` is a floating dtype narrower than float32."""
    return dtype.is_floating_point and torch.finfo(dtype).bits < 32


def stored_dtype(tensor: Tensor, frozen_dtype: torch.dtype) -> torch.dtype:
    """The dtype a frozen weight (a parameter or persistent buffer, as loaded) is kept in: `frozen_dtype` for floating
    tensors of two or more dimensions, its own dtype otherwise."""
    return frozen_dtype if tensor.is_floating_point() and tensor.ndim >= 2 else tensor.dtype


@contextmanager
def frozen_compute(frozen_dtype: torch.dtype, reference: Tensor) -> Iterator[bool]:
    """Runs frozen modules whose weights are in a low-precision dtype: under autocast to it when none is active.

    Args:
        frozen_dtype: the dtype the frozen weights are kept in.
        reference: a tensor on the device the modules run on.

    Yields:
        Whether this context turned autocast on (the caller then returns outputs in the input's dtype).
    """
    device = reference.device.type
    if not is_low_precision(frozen_dtype) or torch.is_autocast_enabled(device):
        yield False
        return
    with torch.autocast(device, dtype=frozen_dtype):
        yield True


def master_copy(tensor: Tensor) -> nn.Parameter:
    """A trainable float32 parameter with the values of a frozen (possibly low-precision) tensor."""
    return nn.Parameter(tensor.detach().to(torch.float32, copy=True), requires_grad=True)
