"""A frozen timm Vision Transformer: built once at timm's own size, fingerprinted, never trained."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from vitadapter.backbone.families import ViTFamily, family_for
from vitadapter.backbone.fingerprint import state_fingerprint
from vitadapter.backbone.weights import file_overlay, pretrained_source

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
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Creates a headless timm ViT at timm's own image size.

    The model is never rebuilt for an input size: the encoder resamples position embeddings (and
    BEiT's relative-position tables) to each input's grid on the fly, so one set of weights, and one
    fingerprint, serves every input size and task.

    Args:
        name: any supported timm ViT name (see `vitadapter.backbone.families`).
        pretrained: load timm's pretrained weights: from the local Hugging Face cache when they are
            there (no network call), else downloaded; with neither, `PretrainedWeightsUnavailable`
            says what to do within seconds (see `vitadapter.backbone.weights`).
        checkpoint: a local weights file; loaded by timm, which adapts it to the model.
        seed: initialisation seed when no weights are loaded, so random backbones are reproducible.
        model_kwargs: extra timm constructor arguments (e.g. `depth`, `patch_size` for demos).

    Returns:
        The timm model.
    """
    if name not in timm.list_models() and name not in timm.list_pretrained():
        close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
        raise ValueError(f"model.backbone.name={name!r} is not a timm model; similar names: {close}")
    kwargs: dict[str, Any] = dict(model_kwargs or {})
    kwargs["num_classes"] = 0
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"model.backbone.checkpoint={checkpoint!r} does not exist; give the path of a weights file "
                "(.pth/.bin/.safetensors) for the timm model, or set model.backbone.checkpoint=null"
            )
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = file_overlay(checkpoint)
    elif pretrained:
        kwargs["pretrained_cfg_overlay"] = pretrained_source(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:  # VisionTransformer and Eva resample their position embedding per input themselves
            vit = timm.create_model(name, pretrained=pretrained, dynamic_img_size=True, dynamic_img_pad=True, **kwargs)
        except TypeError as error:  # Beit and refused families have no such arguments
            if "dynamic_img" not in str(error):
                raise
            torch.manual_seed(seed)
            vit = timm.create_model(name, pretrained=pretrained, **kwargs)
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
    """A frozen timm ViT and the facts the rest of the model needs about it.

    Every tensor of the ViT is frozen (`requires_grad=False`) and recorded as the frozen set when it
    is built; its modules stay in eval mode (no dropout or drop-path). A PEFT method may later wrap
    its sublayers or unfreeze some of its tensors; the encoder runs its blocks
    (`vitadapter.encoder.Encoder`).

    Attributes:
        vit: the timm model.
        family: how this model embeds an image and calls a block.
        embed_dim: token width.
        patch_size: patch side in pixels (the stride of every tapped map).
        num_prefix_tokens: class/register tokens before the patches.
        depth: number of blocks.
        out_indices: 0-based indices of the tapped blocks.
        mean, std: the normalisation the weights expect (0..1 pixel units).
        fingerprint: SHA-256 of the frozen weights as built (independent of any input size).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        checkpoint: str | None = None,
        seed: int = 0,
        out_indices: Sequence[int] | None = None,
        grad_checkpointing: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.model_kwargs = dict(model_kwargs or {})
        self.vit = create_timm_vit(name, pretrained, checkpoint, seed, model_kwargs)
        self.family: ViTFamily = family_for(self.vit, name)
        self.vit.requires_grad_(False)
        self.vit.eval()
        self.fingerprint = state_fingerprint(self.vit)
        # weak references, not bare ids: a merged-away tensor's (or module's) id may be reused by a new one
        self._frozen_tensors = {id(t): weakref.ref(t) for t in (*self.vit.parameters(), *self.vit.buffers())}
        # each pretrained tensor's timm state-dict name: a method may move the tensor (LoRA's `qkv.base_layer`)
        self._pretrained_names = {id(t): name for name, t in (*self.vit.named_parameters(), *self.vit.named_buffers())}
        # set once the frozen tensors are shared with other tasks' backbones (`adopt_frozen_tensors`)
        self.shares_frozen_tensors = False
        self._pretrained_modules = weakref.WeakSet(self.vit.modules())
        # set by a method that trains the ViT's own weights (full fine-tuning): its modules then follow train()
        self.modules_follow_train = False
        self.embed_dim: int = self.vit.embed_dim
        patch = self.vit.patch_embed.patch_size
        self.patch_size: int = patch[0] if isinstance(patch, Sequence) else patch
        self.num_prefix_tokens: int = getattr(self.vit, "num_prefix_tokens", 1)
        self.depth: int = len(self.vit.blocks)
        taps = list(out_indices) if out_indices is not None else evenly_spaced_taps(self.depth)
        if any(not -self.depth <= i < self.depth for i in taps):
            raise ValueError(f"model.backbone.out_indices={taps} outside the {self.depth} blocks of {name!r}")
        self.out_indices = [i % self.depth for i in taps]
        data_cfg = timm.data.resolve_model_data_config(self.vit)
        self.mean: tuple[float, ...] = tuple(float(v) for v in data_cfg["mean"])
        self.std: tuple[float, ...] = tuple(float(v) for v in data_cfg["std"])
        self.grad_checkpointing = grad_checkpointing

    @property
    def used_depth(self) -> int:
        """Blocks the encoder runs: up to the last tapped one (later blocks never run, never train)."""
        return max(self.out_indices) + 1

    def is_pretrained_tensor(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` is one of the pretrained ViT's tensors as built (trained now or not)."""
        ref = self._frozen_tensors.get(id(tensor))
        return ref is not None and ref() is tensor

    def is_pretrained_module(self, module: nn.Module) -> bool:
        """Whether `module` is one of the timm model's own modules as built (not one a method added)."""
        return module in self._pretrained_modules

    def is_frozen_tensor(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` belongs to the pretrained ViT as built and does not train now."""
        return not tensor.requires_grad and self.is_pretrained_tensor(tensor)

    def frozen_tensor_slots(self) -> list[tuple[str, nn.Module, str, torch.Tensor]]:
        """Where each frozen pretrained tensor sits now, wherever a method moved it.

        Returns:
            (timm state-dict name, owning module, attribute, tensor) per frozen tensor of the ViT as built.
        """
        slots = []
        for module in self.vit.modules():
            for attribute, tensor in (*module._parameters.items(), *module._buffers.items()):
                if tensor is not None and self.is_frozen_tensor(tensor):
                    slots.append((self._pretrained_names[id(tensor)], module, attribute, tensor))
        return slots

    def adopt_frozen_tensors(self, shared: dict[str, torch.Tensor]) -> None:
        """Replaces this ViT's frozen tensors by the same-named ones in `shared`, and adds those it lacks.

        Several tasks' backbones built from the same frozen weights then hold one copy of them. Only
        tensors that do not train here are replaced (a BitFit task keeps its own biases), and only by
        tensors that train nowhere (the caller puts only frozen tensors into `shared`).

        Args:
            shared: timm state-dict name -> the frozen tensor every backbone uses (updated in place).
        """
        for name, module, attribute, tensor in self.frozen_tensor_slots():
            common = shared.setdefault(name, tensor)
            if common is tensor:
                continue
            if common.shape != tensor.shape or common.dtype != tensor.dtype or not torch.equal(common, tensor):
                raise ValueError(f"frozen tensor {name!r} differs between the backbones that share it; "
                                 "only backbones with the same fingerprint can share frozen weights")
            slots = module._parameters if attribute in module._parameters else module._buffers
            slots[attribute] = common
            self._frozen_tensors[id(common)] = weakref.ref(common)
            self._pretrained_names[id(common)] = name
        self.shares_frozen_tensors = True

    def train(self, mode: bool = True) -> ViTBackbone:
        """Keeps the frozen ViT in eval mode; modules a PEFT method placed inside it switch."""
        super().train(mode)
        if not self.modules_follow_train:
            for module in self.vit.modules():
                if self.is_pretrained_module(module):
                    module.training = False
        return self
