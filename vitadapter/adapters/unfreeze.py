"""Methods that train some of the ViT's own tensors: BitFit (biases), LayerNorm affine, full fine-tuning.

Zaken et al., "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked
Language-models", ACL 2022. Norm tuning trains the LayerNorms' scale and shift only. Full fine-tuning
trains every weight the encoder runs, with layer-wise lr decay as in BEiT (Bao et al., ICLR 2022) and
ViT-Adapter's segmentation recipes. Nothing is added, so the fresh model computes the frozen features.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

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


@register_method("bitfit")
@dataclass
class BitFitConfig(MethodConfig):
    """Trains every bias of the adapted blocks (BEiT's separate q/v biases included)."""

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        for index in self.block_indices(backbone):
            for name, param in backbone.vit.blocks[index].named_parameters():
                if name.endswith("bias"):
                    param.requires_grad_(True)
        return None


@register_method("norm")
@dataclass
class NormTuningConfig(MethodConfig):
    """Trains the scale and shift of every LayerNorm in the adapted blocks."""

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        for index in self.block_indices(backbone):
            for module in backbone.vit.blocks[index].modules():
                if isinstance(module, nn.LayerNorm):
                    module.requires_grad_(True)
        return None


@register_method("full")
@dataclass
class FullFineTuningConfig(MethodConfig):
    """Trains every ViT weight the encoder runs (the reference baseline), with layer-wise lr decay.

    Stochastic depth, as the fine-tuning recipes use it, is timm's: `model.backbone.model_kwargs.drop_path_rate`.
    """

    per_block: ClassVar[bool] = False

    layer_decay: float = field(
        default=0.65,
        metadata={"help": "lr multiplier per block from the top (BEiT/ViT-Adapter: 0.65-0.9); 1.0 = no decay"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"model.adapter.layer_decay must be in (0, 1], got {self.layer_decay}")

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        for _, param in used_named_parameters(backbone, list(range(backbone.used_depth))):
            param.requires_grad_(True)
        backbone.modules_follow_train = True
        return None

    def lr_scales(self, backbone: ViTBackbone) -> dict[int, float]:
        """BEiT's layer ids: embeddings 0, block i -> i + 1, the layers after the ViT depth + 1 (scale 1)."""
        top = backbone.used_depth + 1
        scales = {}
        for name, param in used_named_parameters(backbone, list(range(backbone.used_depth))):
            layer = int(name.split(".")[1]) + 1 if name.startswith("blocks.") else 0
            scales[id(param)] = self.layer_decay ** (top - layer)
        return scales
