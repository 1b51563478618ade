"""A frozen timm Vision Transformer that returns the tokens of chosen blocks as NCHW maps."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from vitadapter.adapters.base import AdapterConfig, SpatialAdapter
from vitadapter.adapters.registry import inject_adapters
from vitadapter.backbone.fingerprint import state_fingerprint

log = logging.getLogger(__name__)


def evenly_spaced_taps(depth: int, count: int = 4) -> list[int]:
    """Returns `count` block indices spread evenly over `depth` blocks, ending at the last one.

    Args:
        depth: number of transformer blocks.
        count: number of taps.

    Returns:
        0-based block indices, e.g. [2, 5, 8, 11] for depth 12 (blocks 3, 6, 9, 12).
    """
    if depth < count:
        raise ValueError(f"a ViT of depth {depth} cannot provide {count} distinct taps")
    return [(k + 1) * depth // count - 1 for k in range(count)]


def create_timm_vit(
    name: str,
    pretrained: bool = False,
    checkpoint: str | None = None,
    seed: int = 0,
    img_size: int | Sequence[int] | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Creates a headless timm ViT with dynamic image size.

    Args:
        name: any timm ViT name (`vit_*`, `deit_*`, `*_dinov2`, `eva02_*`, CLIP ViTs, `test_vit`).
        pretrained: load timm's pretrained weights (needs internet or a populated HF cache).
        checkpoint: a local weights file; loaded by timm so position embeddings are resampled.
        seed: initialisation seed when no weights are loaded, so random backbones are reproducible.
        img_size: the size the position embeddings are built for (resampled from the weights).
        model_kwargs: extra timm constructor arguments (e.g. `depth`, `patch_size` for demos).

    Returns:
        The timm model.
    """
    kwargs: dict[str, Any] = dict(model_kwargs or {})
    kwargs.update(num_classes=0, dynamic_img_size=True, dynamic_img_pad=True)
    if img_size is not None:
        kwargs["img_size"] = tuple(img_size) if isinstance(img_size, Sequence) else img_size
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"model.backbone.checkpoint={checkpoint!r} does not exist; give the path of a weights file "
                "(.pth/.bin/.safetensors) for the timm model, or set model.backbone.checkpoint=null"
            )
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = {"file": str(checkpoint)}
    if name not in timm.list_models() and name not in timm.list_pretrained():
        close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
        raise ValueError(f"model.backbone.name={name!r} is not a timm model; similar names: {close}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = timm.create_model(name, pretrained=pretrained, **kwargs)
    if not hasattr(vit, "blocks") or not hasattr(vit, "forward_intermediates"):
        raise ValueError(f"{name!r} is not a plain ViT (needs `blocks` and `forward_intermediates`)")
    if not pretrained:
        log.warning(
            "Backbone %r has RANDOM weights (model.backbone.pretrained=false, seed %d): its features carry no "
            "knowledge. Fine for demos and tests; for real use set model.backbone.pretrained=true or "
            "model.backbone.checkpoint=/path/to/weights.",
            name,
            seed,
        )
    return vit


class ViTBackbone(nn.Module):
    """A frozen timm ViT whose chosen blocks' tokens come out as NCHW maps.

    All of the ViT's own parameters are frozen and its modules stay in eval mode (no dropout or
    drop-path); adapters injected with `add_adapters` are the only trainable part and follow the
    usual train/eval switch. Blocks below the lowest adapter record no autograd graph because
    nothing there requires grad.

    Attributes:
        embed_dim: token width.
        patch_size: patch side in pixels (the stride of every tapped map).
        num_prefix_tokens: class/register tokens, dropped from the maps.
        depth: number of blocks.
        out_indices: 0-based indices of the tapped blocks.
        mean, std: the normalisation the weights expect (0..1 pixel units).
        fingerprint: SHA-256 of the frozen weights.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        checkpoint: str | None = None,
        seed: int = 0,
        out_indices: Sequence[int] | None = None,
        img_size: int | Sequence[int] | None = None,
        grad_checkpointing: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.vit = create_timm_vit(name, pretrained, checkpoint, seed, img_size, model_kwargs)
        self.vit.requires_grad_(False)
        self.vit.eval()
        self.fingerprint = state_fingerprint(self.vit)
        self.embed_dim: int = self.vit.embed_dim
        patch = self.vit.patch_embed.patch_size
        self.patch_size: int = patch[0] if isinstance(patch, Sequence) else patch
        self.num_prefix_tokens: int = getattr(self.vit, "num_prefix_tokens", 1)
        self.depth: int = len(self.vit.blocks)
        taps = list(out_indices) if out_indices is not None else evenly_spaced_taps(self.depth)
        self.out_indices = [i % self.depth for i in taps]
        if any(not -self.depth <= i < self.depth for i in taps):
            raise ValueError(f"model.backbone.out_indices={taps} outside the {self.depth} blocks of {name!r}")
        data_cfg = timm.data.resolve_model_data_config(self.vit)
        self.mean: tuple[float, ...] = tuple(float(v) for v in data_cfg["mean"])
        self.std: tuple[float, ...] = tuple(float(v) for v in data_cfg["std"])
        # a plain list, not a ModuleList: the adapters are registered inside the blocks already
        self.adapters: list[nn.Module] = []
        if grad_checkpointing:
            self.vit.set_grad_checkpointing(True)

    def add_adapters(self, config: AdapterConfig) -> None:
        """Injects trainable adapters into the frozen blocks (see `vitadapter.adapters`)."""
        self.adapters.extend(inject_adapters(self.vit, config))

    def train(self, mode: bool = True) -> ViTBackbone:
        """Keeps the frozen ViT in eval mode; only the adapters switch."""
        super().train(mode)
        self.vit.eval()
        for adapter in self.adapters:
            adapter.train(mode)
        return self

    def frozen_state_keys(self) -> list[str]:
        """State-dict keys (relative to this module) of the frozen ViT, adapters excluded."""
        adapter_tensors = {id(t) for a in self.adapters for t in (*a.parameters(), *a.buffers())}
        return [k for k, t in self.state_dict(keep_vars=True).items() if id(t) not in adapter_tensors]

    def forward(self, image: Tensor) -> list[Tensor]:
        """Runs the ViT up to the last tapped block.

        Args:
            image: B×3×H×W normalised image (any H, W; padded up to whole patches).

        Returns:
            One B×embed_dim×h×w map per tapped block, prefix tokens dropped.
        """
        grid = (math.ceil(image.shape[-2] / self.patch_size), math.ceil(image.shape[-1] / self.patch_size))
        for adapter in self.adapters:
            if isinstance(adapter, SpatialAdapter):
                adapter.grid = grid
        return self.vit.forward_intermediates(
            image, indices=self.out_indices, output_fmt="NCHW", intermediates_only=True, stop_early=True
        )
