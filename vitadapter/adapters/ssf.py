"""SSF: a learnable per-channel scale and shift after every linear operation of the frozen ViT.

Lian et al., "Scaling & Shifting Your Features: A New Baseline for Efficient Model Tuning",
NeurIPS 2022. As in the paper's code, every Linear and LayerNorm of an adapted block is followed by
y -> scale * y + shift (attention qkv and proj, MLP fc1 and fc2, norm1 and norm2, and whatever
else the family has: EVA's q/k/v projections, SwiGLU's fc1_g/fc1_x, sub-LayerNorms), and with
`embedding` so are the patch embedding and the pre-block norm.

`ScaleShift` wraps each layer, so the frozen tensors keep their state-dict keys under
`<name>.base.` and merging folds scale * (Wx + b) + shift = (scale W) x + (scale b + shift) into
the layer and unwraps it. Its `weight` and `bias` are those folded tensors, so code that reads a
layer's `.weight` instead of calling it (EVA-02's and BEiT's fused qkv with separate q/v biases)
runs the scaled layer too. A fresh SSF (scale 1, shift 0) computes the frozen features bit for bit.

A layer without a bias of its own (a bias-free qkv or k_proj) gets a scale only: once merged, a
plain timm layer has no tensor that could hold the shift. For EVA-02's and BEiT's fused qkv, whose
q/v biases live on the attention, the scale then acts before those biases are added.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from vitadapter.adapters.base import MethodConfig, MethodHooks
from vitadapter.adapters.registry import register_method
from vitadapter.backbone.families import EMBEDDING_MODULES

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone

log = logging.getLogger(__name__)

# layers whose output SSF scales and shifts; each has a weight (and maybe a bias) per output channel
AFFINE_LAYERS = (nn.Linear, nn.Conv2d, nn.LayerNorm)


class ScaleShift(nn.Module):
    """A frozen Linear, Conv2d or LayerNorm followed by a per-channel scale and shift.

    `weight` and `bias` are the folded tensors (scale * W, scale * b + shift), so code that reads
    them directly sees the scaled layer too; other attributes come from the wrapped layer.

    Args:
        base: the frozen layer (with an affine weight).
        init_std: scale ~ N(1, init_std), shift ~ N(0, init_std); 0 gives exactly 1 and 0.
    """

    def __init__(self, base: nn.Module, init_std: float = 0.0) -> None:
        super().__init__()
        self.base = base
        weight = base.weight
        channels = weight.shape if isinstance(base, nn.LayerNorm) else weight.shape[:1]
        # float32 even beside a frozen weight kept in bfloat16: what trains keeps full precision
        options = {"dtype": torch.promote_types(weight.dtype, torch.float32), "device": weight.device}
        self.spatial_dims = weight.ndim - 2 if isinstance(base, nn.Conv2d) else 0  # NCHW: channels before H, W
        self.scale = nn.Parameter(torch.ones(channels, **options))
        if base.bias is not None:
            self.shift = nn.Parameter(torch.zeros(channels, **options))
        else:
            self.register_parameter("shift", None)
        if init_std > 0:
            with torch.no_grad():
                self.scale.normal_(1.0, init_std)
                if self.shift is not None:
                    self.shift.normal_(0.0, init_std)

    @property
    def weight(self) -> Tensor:
        """The base weight with every output channel scaled."""
        weight = self.base.weight
        return weight * self.scale.reshape(self.scale.shape + (1,) * (weight.ndim - self.scale.ndim))

    @property
    def bias(self) -> Tensor | None:
        """scale * base bias + shift (None for a bias-free base, which gets no shift)."""
        bias = self.base.bias
        return None if bias is None else bias * self.scale + self.shift

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        # in the output space, as the paper: cheaper to train than the folded weight (no weight gradient)
        shape = self.scale.shape + (1,) * self.spatial_dims
        y = self.base(*args, **kwargs) * self.scale.reshape(shape)
        return y if self.shift is None else y + self.shift.reshape(shape)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__.get("_modules", {}).get("base")
            if base is None or name == "base":
                raise
            return getattr(base, name)


def affine_layer_names(vit: nn.Module, root: str) -> list[str]:
    """Names (in `vit`) of every affine layer in submodule `root`, `root` itself included."""
    names = []
    for name, module in vit.get_submodule(root).named_modules(prefix=root):
        if isinstance(module, ScaleShift):
            raise ValueError(f"{name} already has SSF; apply the method once")
        if isinstance(module, AFFINE_LAYERS):
            if getattr(module, "weight", None) is None:
                log.info("%s has no affine weight: no SSF there", name)
            else:
                names.append(name)
    return names


def parent_of(vit: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding submodule `name` and its attribute name there."""
    parent, _, attribute = name.rpartition(".")
    return vit.get_submodule(parent), attribute


@register_method("ssf")
@dataclass
class SSFConfig(MethodConfig):
    """SSF on every affine layer of the adapted blocks (and the embedding); mergeable."""

    mergeable: ClassVar[bool] = True

    embedding: bool = field(
        default=True,
        metadata={"help": "also scale and shift the patch embedding and pre-block norm (the SSF code does)"},
    )
    init_std: float = field(
        default=0.0,
        metadata={"help": "scale ~ N(1, std), shift ~ N(0, std); 0 keeps the frozen features (the SSF code: 0.02)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_std < 0:
            raise ValueError(f"model.adapter.init_std must be >= 0, got {self.init_std}")
        if self.embedding and self.drop_below:
            raise ValueError(
                f"model.adapter.drop_below={self.drop_below} keeps the lower blocks graph-free, but "
                "model.adapter.embedding=true trains the patch embedding below them; set model.adapter.embedding=false"
            )

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        vit = backbone.vit
        names = []
        if self.embedding:
            names += [n for part in EMBEDDING_MODULES if isinstance(getattr(vit, part, None), nn.Module)
                      for n in affine_layer_names(vit, part)]
        for index in self.block_indices(backbone):
            names += affine_layer_names(vit, f"blocks.{index}")
        bias_free = []
        for name in names:
            parent, attribute = parent_of(vit, name)
            wrapper = ScaleShift(getattr(parent, attribute), self.init_std)
            setattr(parent, attribute, wrapper)
            if wrapper.shift is None:
                bias_free.append(name)
        if bias_free:
            log.info("SSF: %d bias-free layers get a scale only (%s, ...)", len(bias_free), bias_free[0])
        return None

    def merge_into(self, backbone: ViTBackbone) -> None:
        """Folds every scale and shift into its layer and puts the plain timm layer back.

        The merged tensors are new, frozen parameters: they are not the pretrained tensors, so
        checkpoints taken after merging keep them.
        """
        wrapped = [name for name, module in backbone.vit.named_modules() if isinstance(module, ScaleShift)]
        for name in wrapped:
            parent, attribute = parent_of(backbone.vit, name)
            wrapper: ScaleShift = getattr(parent, attribute)
            base = wrapper.base
            with torch.no_grad():
                base.weight = nn.Parameter(wrapper.weight.detach().clone(), requires_grad=False)
                if wrapper.shift is not None:
                    base.bias = nn.Parameter(wrapper.bias.detach().clone(), requires_grad=False)
            setattr(parent, attribute, base)
