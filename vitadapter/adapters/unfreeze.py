"""Methods that train some of the ViT's own tensors: BitFit (biases), norm affine, full fine-tuning.

Zaken et al., "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked
Language-models", ACL 2022. Norm tuning trains the normalisation layers' scale and shift only. Full
fine-tuning trains every weight the encoder runs, with layer-wise lr decay as in BEiT (Bao et al., ICLR 2022) and
ViT-Adapter's segmentation recipes. Nothing is added, so the fresh model computes the frozen features.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import timm.layers.norm as timm_norm
from torch import nn

from vitadapter.adapters.base import MethodConfig, MethodHooks
from vitadapter.adapters.registry import register_method
from vitadapter.backbone.families import EMBEDDING_MODULES, EMBEDDING_TENSORS

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone

def used_named_parameters(backbone: ViTBackbone, blocks: list[int]) -> Iterator[tuple[str, nn.Parameter]]:
    """The ViT's parameters that the encoder uses: embeddings and the given blocks (not the final norm/head)."""
    vit = backbone.vit
    for name in EMBEDDING_TENSORS:
        tensor = getattr(vit, name, None)
        if isinstance(tensor, nn.Parameter):
            yield name, tensor
    for part in EMBEDDING_MODULES:
        module = getattr(vit, part, None)
        if isinstance(module, nn.Module):
            for name, param in module.named_parameters():
                yield f"{part}.{name}", param
    for index in blocks:
        for name, param in vit.blocks[index].named_parameters():
            yield f"blocks.{index}.{name}", param


# every normalisation layer class a timm ViT may run: torch's, and all of timm's (`timm.layers.norm`, whose
# subclasses include the norm+activation layers); listed from the module so timm's new norms count too
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    *(cls for cls in vars(timm_norm).values()
      if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == timm_norm.__name__),
)


def adapted_modules(method: MethodConfig, backbone: ViTBackbone) -> Iterator[nn.Module]:
    """The ViT's modules a tensor-unfreezing method adapts: its blocks, and the embedding modules with block 0.

    The embedding (patch embedding, `norm_pre`, ...) runs before block 0, so it trains only when block 0 does
    (with `drop_below` > 0 the lower blocks, embedding included, stay graph-free).
    """
    vit, blocks = backbone.vit, method.block_indices(backbone)
    if 0 in blocks:
        for part in EMBEDDING_MODULES:
            module = getattr(vit, part, None)
            if isinstance(module, nn.Module):
                yield module
    for index in blocks:
        yield vit.blocks[index]


def unfreeze(method: MethodConfig, backbone: ViTBackbone, tensors: list[nn.Parameter], what: str) -> None:
    """Trains `tensors` (float32 masters of weights kept in a lower precision, `ViTBackbone.unfreeze`), or refuses a
    method that finds nothing to train (a silent no-op would train only the head)."""
    if not tensors:
        raise ValueError(
            f"model.adapter.name={method.method_name!r} finds no {what} to train in model.backbone.name="
            f"{backbone.name!r} (adapted blocks {method.block_indices(backbone)}; the embedding counts with block "
            "0): choose another method (e.g. model/adapter=ssf or lora), or other model.adapter.layers / drop_below"
        )
    backbone.unfreeze(tensors)


@register_method("bitfit")
@dataclass
class BitFitConfig(MethodConfig):
    """Trains every bias term the encoder runs, as BitFit trains all of BERT's (Linear, conv and norm biases).

    That is the patch embedding's, every Linear's (BEiT's and EVA's separate q/v biases included) and every
    norm's shift; not BEiT's relative-position tables, which are position embeddings.
    """

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        biases = [param for module in adapted_modules(self, backbone)
                  for name, param in module.named_parameters() if name.endswith("bias")]
        unfreeze(self, backbone, biases, "bias")
        return None


@register_method("norm")
@dataclass
class NormTuningConfig(MethodConfig):
    """Trains the scale and shift of every normalisation layer the encoder runs (`NORM_TYPES`).

    LayerNorm and RMSNorm (torch's and timm's) in the blocks, their q/k norms and inner norms (EVA-02's
    sub-LN), and the embedding's (`norm_pre`, the patch embedding's norm).
    """

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        tensors = [param for part in adapted_modules(self, backbone) for module in part.modules()
                   if isinstance(module, NORM_TYPES) for param in module.parameters(recurse=False)]
        unfreeze(self, backbone, tensors, "normalisation-layer weight")
        return None


@register_method("full")
@dataclass
class FullFineTuningConfig(MethodConfig):
    """Trains every ViT weight the encoder runs (the reference baseline).

    Its config (`model/adapter=full`) turns on layer-wise lr decay, `model.optimizer.layer_decay`.
    Stochastic depth, as the fine-tuning recipes use it, is timm's: `model.backbone.model_kwargs.drop_path_rate`.
    """

    per_block: ClassVar[bool] = False

    layer_decay: float | None = field(
        default=None,
        metadata={"help": "not a method setting: layer-wise lr decay is model.optimizer.layer_decay (every method)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer_decay is not None:
            raise ValueError(
                f"model.adapter.layer_decay={self.layer_decay}: layer-wise lr decay is an optimiser setting for every "
                f"method; set model.optimizer.layer_decay={self.layer_decay} instead"
            )

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        backbone.unfreeze(param for _, param in used_named_parameters(backbone, list(range(backbone.used_depth))))
        backbone.modules_follow_train = True
        return None
