"""A frozen timm Vision Transformer: built once at timm's own size, fingerprinted, never trained."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import timm
import torch
from torch import nn

from vitadapter.backbone.build import build_frozen_vit
from vitadapter.backbone.families import ViTFamily, family_for
from vitadapter.backbone.precision import dtype_name, is_low_precision, master_copy, parse_frozen_dtype
from vitadapter.backbone.taps import resolve_taps


class _Held:
    """A strong reference called like a `weakref.ref` (see `ViTBackbone.track_replaced_parameters`)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __call__(self) -> torch.Tensor:
        return self.tensor


class ViTBackbone(nn.Module):
    """A frozen timm ViT and the facts the rest of the model needs about it.

    Every tensor of the ViT is frozen (`requires_grad=False`) and recorded as the frozen set when it
    is built; its modules stay in eval mode (no dropout or drop-path). A PEFT method may later wrap
    its sublayers or unfreeze some of its tensors (`unfreeze`); the encoder runs its blocks
    (`vitadapter.encoder.Encoder`). The weight matrices are kept in `frozen_dtype`
    (`vitadapter.backbone.precision`); the model is built without a float32 copy (`vitadapter.backbone.build`).

    Args:
        name: a timm ViT name (`vitadapter.backbone.families`).
        pretrained: load timm's pretrained weights (cache, else download).
        checkpoint: a local weights file instead (.safetensors, .pth, .bin), memory-mapped.
        seed: initialisation seed of random weights (and of tensors a weights file lacks).
        out_indices: tapped blocks: indices (negative from the end), "even4" (four evenly spaced blocks ending at
            the last, `vitadapter.backbone.taps`) or None (the same).
        grad_checkpointing: recompute the blocks that record a graph in the backward pass.
        model_kwargs: extra timm constructor arguments.
        frozen_dtype: "float32" (default), "bfloat16" or "float16": the dtype the frozen weight matrices are kept in.
        device: where the weights are made ("cpu"; "meta" builds the structure only, without values or fingerprint).

    Attributes:
        vit: the timm model.
        family: how this model embeds an image and calls a block.
        embed_dim: token width.
        patch_size: patch side in pixels (the stride of every tapped map).
        num_prefix_tokens: class/register tokens before the patches.
        depth: number of blocks.
        out_indices: 0-based indices of the tapped blocks.
        mean, std: the normalisation the weights expect (0..1 pixel units).
        fingerprint: SHA-256 of the frozen weights as loaded (independent of any input size and of `frozen_dtype`;
            None on the meta device).
        frozen_dtype: the dtype of the frozen weight matrices.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        checkpoint: str | None = None,
        seed: int = 0,
        out_indices: Sequence[int] | str | None = None,
        grad_checkpointing: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        frozen_dtype: str | torch.dtype = "float32",
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.name = name
        self.model_kwargs = dict(model_kwargs or {})
        self.frozen_dtype = parse_frozen_dtype(frozen_dtype)
        built = build_frozen_vit(name, pretrained, checkpoint, seed, model_kwargs, self.frozen_dtype, device)
        self.vit = built.vit
        self.fingerprint = built.fingerprint
        self.family: ViTFamily = family_for(self.vit, name, self.frozen_dtype)
        self.vit.requires_grad_(False)
        self.vit.eval()
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
        self.out_indices = resolve_taps(out_indices, self.depth, name)
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

    def unfreeze(self, tensors: Iterable[nn.Parameter]) -> None:
        """Makes some of the ViT's own parameters train (BitFit, norm tuning, full fine-tuning).

        A parameter kept in a low-precision frozen dtype is replaced, in every slot that holds it, by a float32
        master copy of its stored values, which stays a pretrained tensor of the same name: the optimiser updates
        float32 values and checkpoints hold them.

        Args:
            tensors: parameters of `vit` (pretrained ones, frozen or not).
        """
        tensors = list(tensors)
        if not any(is_low_precision(t.dtype) for t in tensors):
            for tensor in tensors:
                tensor.requires_grad_(True)
            return
        slots: dict[int, list[tuple[nn.Module, str]]] = {}
        for module in self.vit.modules():
            for attribute, tensor in module._parameters.items():
                if tensor is not None:
                    slots.setdefault(id(tensor), []).append((module, attribute))
        for tensor in tensors:
            if not is_low_precision(tensor.dtype):
                tensor.requires_grad_(True)
                continue
            master = master_copy(tensor)
            for module, attribute in slots.get(id(tensor), []):
                module._parameters[attribute] = master
            self._frozen_tensors[id(master)] = weakref.ref(master)
            self._pretrained_names[id(master)] = self._pretrained_names[id(tensor)]

    def track_replaced_parameters(self, before: dict[str, torch.Tensor]) -> None:
        """Keeps the pretrained and frozen sets when a wrapper (FSDP2's `fully_shard`) replaced the ViT's parameters by
        new ones of the same names.

        The new parameters are held by strong references: FSDP2 later swaps their contents in place (`Module.to`),
        which torch refuses for a tensor with a weak reference; held, none of their ids can be reused meanwhile.

        Args:
            before: `vit.named_parameters()` as it was before the replacement.
        """
        for name, tensor in self.vit.named_parameters():
            old = before.get(name)
            if old is not None and old is not tensor and self.is_pretrained_tensor(old):
                self._frozen_tensors[id(tensor)] = _Held(tensor)
                self._pretrained_names[id(tensor)] = self._pretrained_names[id(old)]

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
            if common.dtype != tensor.dtype:
                raise ValueError(
                    f"frozen tensor {name!r} is {dtype_name(tensor.dtype)} here but {dtype_name(common.dtype)} in the "
                    "backbones it would share with: build every task with the same model.backbone.frozen_dtype"
                )
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
