"""Convpass: a bottleneck adapter with a k×k convolution over the token grid.

Jie & Deng, "Convolutional Bypasses Are Better Vision Transformer Adapters", 2022. The convolution
gives the adapter a local spatial prior that plain (token-wise) bottleneck adapters lack. The
defaults follow the authors' code (JieShibo/PETL-ViT, `convpass/vtab/convpass.py`): beside attention
and MLP, fed with the sublayer's normed input; down -> QuickGELU -> 3×3 conv -> QuickGELU -> dropout
0.1 -> up, times `s` (1 by default; tuned per task in their configs, from 0.01 to 100); the conv
starts as the identity (zeros with an identity centre tap), the down projection xavier-uniform
with a zero bias, the up projection zero; the class token goes through the same conv as a 1×1 map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.layers import get_act_layer
from torch import Tensor, nn

from vitadapter.adapters.base import SpatialAdapter
from vitadapter.adapters.registry import register_method
from vitadapter.adapters.residual_adapter import ResidualAdapterConfig

INITS = ("identity", "xavier", "torch")


class ConvpassAdapter(SpatialAdapter):
    """tokens -> down -> [act] -> k×k conv on the patch grid -> act -> dropout -> zero-initialised up -> × scale.

    The grid is set by the encoder before each forward (`SpatialAdapter.grid`).

    Args:
        dim: token width.
        bottleneck_dim: hidden width.
        num_prefix_tokens: class/register tokens before the patches.
        scale: multiplier on the output.
        kernel_size: side of the (odd) convolution.
        activation: timm activation name (`quick_gelu` as the authors, `gelu`, ...).
        act_before_conv: apply the activation after the down projection too (the authors do).
        init: "identity" (the authors' default), "xavier" (their `xavier_init` option) or "torch"
            (PyTorch's default init of the down projection and the conv).
        prefix_through_conv: prefix tokens pass the conv as 1×1 maps (the authors'); else they skip it.
        dropout: dropout before the up projection.
    """

    def __init__(self, dim: int, bottleneck_dim: int, num_prefix_tokens: int, scale: float = 1.0,
                 kernel_size: int = 3, activation: str = "quick_gelu", act_before_conv: bool = True,
                 init: str = "identity", prefix_through_conv: bool = True, dropout: float = 0.1) -> None:
        super().__init__(num_prefix_tokens)
        # the modules are created in this order whatever `init` is, so a seed gives the same draws as before
        self.down = nn.Linear(dim, bottleneck_dim)
        self.conv = nn.Conv2d(bottleneck_dim, bottleneck_dim, kernel_size, padding=kernel_size // 2)
        self.act = get_act_layer(activation)()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.Linear(bottleneck_dim, dim)
        self.act_before_conv = act_before_conv
        self.prefix_through_conv = prefix_through_conv
        if init != "torch":
            nn.init.xavier_uniform_(self.down.weight)
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.conv.bias)
            if init == "xavier":
                nn.init.xavier_uniform_(self.conv.weight)
            else:
                nn.init.zeros_(self.conv.weight)
                with torch.no_grad():
                    centre = kernel_size // 2
                    self.conv.weight[:, :, centre, centre] = torch.eye(bottleneck_dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.register_buffer("scale", torch.tensor(float(scale)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.down(x)
        if self.act_before_conv:
            hidden = self.act(hidden)
        prefix, patches = hidden[:, : self.num_prefix_tokens], hidden[:, self.num_prefix_tokens :]
        height, width = self.grid_for(patches.shape[1])
        batch, _, channels = patches.shape
        grid = patches.transpose(1, 2).reshape(batch, channels, height, width)
        patches = self.conv(grid).flatten(2).transpose(1, 2)
        if self.prefix_through_conv and self.num_prefix_tokens:
            # each prefix token as its own 1×1 map: zero padding leaves only the centre tap
            prefix = self.conv(prefix.reshape(-1, channels, 1, 1)).reshape(batch, -1, channels)
        hidden = self.dropout(self.act(torch.cat([prefix, patches], dim=1)))
        return self.up(hidden) * self.scale


@register_method("convpass")
@dataclass
class ConvpassAdapterConfig(ResidualAdapterConfig):
    """Convpass adapters (bottleneck with a convolution over the patch grid); defaults as the authors' code."""

    mode: str = field(default="parallel", metadata={"help": "Convpass runs beside the sublayer (paper); or 'sequential'"})
    bottleneck_dim: int = field(default=8, metadata={"help": "hidden width of the adapter (paper: 8)"})
    kernel_size: int = field(default=3, metadata={"help": "side of the convolution over the patch grid (paper: 3)"})
    scale: float = field(
        default=1.0, metadata={"help": "multiplier s on the adapter output (paper: 1; tuned per task in 0.01..100)"}
    )
    activation: str = field(
        default="quick_gelu",
        metadata={"help": "timm activation name after the conv (and the down projection): paper 'quick_gelu'"},
    )
    act_before_conv: bool = field(
        default=True, metadata={"help": "the activation also between the down projection and the conv (paper)"}
    )
    init: str = field(
        default="identity",
        metadata={"help": "'identity': conv = identity at the kernel centre, down xavier, zero biases (paper); "
                          "'xavier': conv xavier-uniform (paper's xavier_init option); 'torch': PyTorch defaults"},
    )
    prefix_through_conv: bool = field(
        default=True,
        metadata={"help": "class/register tokens pass the conv as 1x1 maps, only its centre tap (paper); "
                          "false: they skip the conv"},
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout before the up projection (paper: 0.1)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bottleneck_dim < 1:
            raise ValueError(f"model.adapter.bottleneck_dim must be >= 1, got {self.bottleneck_dim}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"model.adapter.kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.init not in INITS:
            raise ValueError(f"model.adapter.init={self.init!r}: choose from {list(INITS)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.adapter.dropout must be in [0, 1), got {self.dropout}")
        try:
            known = get_act_layer(self.activation) is not None
        except KeyError:
            known = False
        if not known:
            raise ValueError(f"model.adapter.activation={self.activation!r} is not a timm activation name "
                             "(e.g. quick_gelu, gelu, relu)")

    def build(self, dim: int, num_prefix_tokens: int = 1) -> ConvpassAdapter:
        return ConvpassAdapter(dim, self.bottleneck_dim, num_prefix_tokens, self.scale, self.kernel_size,
                               self.activation, self.act_before_conv, self.init, self.prefix_through_conv,
                               self.dropout)
