"""Creating a frozen timm ViT without a float32 copy: built on the meta device, materialised tensor by tensor.

A 7B trunk kept in bfloat16 needs 13.4 GB; creating it as timm does (float32, randomly initialised, then a
second copy loaded) would need 27 GB plus the weights file. Here the model is constructed on the meta device
(no memory) and each tensor is then made on its own, in float32, hashed into the fingerprint, cast to the frozen
dtype (`vitadapter.backbone.precision.stored_dtype`) and placed, so the peak is the built model plus one tensor:

* **loaded weights** (`pretrained`, `checkpoint`): timm's own loading runs on the meta model and hands over the
  state dict it would load, memory-mapped (`vitadapter.backbone.lazy_loading`); tensors it lacks (a non-strict
  load) get the seed's random init, as in timm.
* **random weights**: the construction is recorded (`vitadapter.backbone.deferred_init`) and each tensor is
  computed as the eager build computes it, so a bfloat16 build equals, bit for bit, the float32 build cast to
  bfloat16, and both have the same fingerprint. A float32 random build is timm's eager one (there is nothing to
  save: the model is float32 anyway).
* **`device="meta"`**: the structure only (no values, no fingerprint), each tensor in the dtype it would be kept in,
  for checks and memory estimates.

Models that load their weights themselves (JAX `.npz` files) are built the classic way, in float32, and cast.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from vitadapter.backbone.deferred_init import DeferredInit, NotDrawnError
from vitadapter.backbone.fingerprint import WeightsHasher, state_fingerprint
from vitadapter.backbone.lazy_loading import MappedFile, capture_pretrained_load, check_loadable, is_placeholder
from vitadapter.backbone.precision import stored_dtype
from vitadapter.backbone.weights import file_overlay, pretrained_source
from vitadapter.utils.heap import release_free_heap

log = logging.getLogger(__name__)

META = torch.device("meta")


@dataclass
class BuiltViT:
    """A timm ViT as built, and its fingerprint (None on the meta device)."""

    vit: nn.Module
    fingerprint: str | None


def timm_arguments(name: str, pretrained: bool, checkpoint: str | None,
                   model_kwargs: dict[str, Any] | None) -> tuple[bool, dict[str, Any]]:
    """Checks the name and the weights file; returns whether weights load and the constructor arguments."""
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
    return pretrained, kwargs


def create_seeded(name: str, pretrained: bool, seed: int, kwargs: dict[str, Any]) -> nn.Module:
    """`timm.create_model` from `seed` (the caller forks the generator), with dynamic input sizes where the family has
    them: VisionTransformer and Eva resample their position embedding per input themselves."""
    torch.manual_seed(seed)
    try:
        return timm.create_model(name, pretrained=pretrained, dynamic_img_size=True, dynamic_img_pad=True, **kwargs)
    except TypeError as error:  # Beit and refused families have no such arguments
        if "dynamic_img" not in str(error):
            raise
    torch.manual_seed(seed)  # the failed attempt may have drawn
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def place(vit: nn.Module, name: str, value: Tensor) -> None:
    """Puts `value` in the slot of state-dict entry or buffer `name` (a parameter keeps its `requires_grad`)."""
    owner, _, attribute = name.rpartition(".")
    module = vit.get_submodule(owner)
    if attribute in module._parameters:
        module._parameters[attribute] = nn.Parameter(value, requires_grad=module._parameters[attribute].requires_grad)
    else:
        module._buffers[attribute] = value


def materialize(vit: nn.Module, value_of: Callable[[str, Tensor], Tensor], frozen_dtype: torch.dtype,
                device: torch.device, copied: Callable[[Tensor], None] | None = None) -> str:
    """Replaces every meta tensor of `vit` by its value, one at a time; returns the fingerprint.

    Args:
        vit: a model built on the meta device.
        value_of: (name, meta tensor) -> its value as loaded (any dtype, on the CPU).
        frozen_dtype: the dtype weights are kept in.
        device: where the tensors go.
        copied: called with each value once it is hashed and copied (to give a weights file's pages back).

    Returns:
        The fingerprint of the weights as loaded, converted to the dtype timm builds them in (float32).
    """
    hasher = WeightsHasher()
    persistent = vit.state_dict(keep_vars=True)
    for name in sorted(persistent):
        meta = persistent[name]
        value = value_of(name, meta)
        loaded = value.to(meta.dtype)
        hasher.add(name, loaded)
        kept = torch.empty_like(meta, dtype=stored_dtype(loaded, frozen_dtype), device=device)
        place(vit, name, kept.copy_(loaded))
        if copied is not None:
            copied(value)
        del value, loaded
        release_free_heap()  # the float32 value just freed, lest the heap keep every one of them
    for name, buffer in list(vit.named_buffers()):
        if buffer.is_meta:  # not in the state dict: derived buffers (RoPE periods, index tables) keep their dtype
            place(vit, name, torch.empty_like(buffer, device=device).copy_(value_of(name, buffer)))
    return hasher.hexdigest()


class _RandomInit:
    """The seed's random init of a model, recorded on the meta device when first asked for (a load's missing keys)."""

    def __init__(self, name: str, pretrained: bool, seed: int, kwargs: dict[str, Any]) -> None:
        self._build = (name, pretrained, seed, kwargs)
        self._recorded: tuple[DeferredInit, dict[str, Tensor]] | None = None

    def value(self, name: str) -> Tensor:
        if self._recorded is None:
            model_name, pretrained, seed, kwargs = self._build
            with torch.random.fork_rng(devices=[]), torch.device(META), DeferredInit() as init, \
                    capture_pretrained_load():
                vit = create_seeded(model_name, pretrained, seed, kwargs)
            tensors = dict(vit.state_dict(keep_vars=True))
            tensors.update(vit.named_buffers())
            self._recorded = (init, tensors)
        init, tensors = self._recorded
        return init.materialize(tensors[name])


def _build_random(name: str, seed: int, kwargs: dict[str, Any], frozen_dtype: torch.dtype,
                  device: torch.device) -> BuiltViT:
    with torch.random.fork_rng(devices=[]):
        if frozen_dtype == torch.float32:
            vit = create_seeded(name, False, seed, kwargs)
            return BuiltViT(vit.to(device), state_fingerprint(vit))
        with torch.device(META), DeferredInit() as init:
            vit = create_seeded(name, False, seed, kwargs)
    return BuiltViT(vit, materialize(vit, lambda _, meta: init.materialize(meta), frozen_dtype, device))


def _build_loaded(name: str, seed: int, kwargs: dict[str, Any], frozen_dtype: torch.dtype,
                  device: torch.device) -> BuiltViT:
    if kwargs.get("pretrained_cfg_overlay", {}).get("custom_load"):  # a JAX .npz file: the model loads it itself
        return _build_classic(name, seed, kwargs, frozen_dtype, device)
    with torch.random.fork_rng(devices=[]), torch.device(META), DeferredInit(random_draws=False) as init, \
            capture_pretrained_load() as captured:
        vit = create_seeded(name, True, seed, kwargs)
    if captured.state_dict is None:  # a download the model loads itself (an .npz URL)
        return _build_classic(name, seed, kwargs, frozen_dtype, device)
    state = {k: v for k, v in captured.state_dict.items() if not is_placeholder(v)}
    missing = check_loadable(state, vit.state_dict(keep_vars=True), captured.strict)
    if missing:
        log.info("%s: %d tensors not in the weights keep their random init (seed %d): %s", name, len(missing), seed,
                 ", ".join(missing[:8]))
    random_init = _RandomInit(name, True, seed, kwargs)

    def value_of(tensor_name: str, meta: Tensor) -> Tensor:
        if tensor_name in state:
            return state.pop(tensor_name)
        try:
            return init.materialize(meta)
        except NotDrawnError:
            return random_init.value(tensor_name)

    mapped = MappedFile(kwargs.get("pretrained_cfg_overlay", {}).get("file"))
    return BuiltViT(vit, materialize(vit, value_of, frozen_dtype, device, mapped.release))


def _build_classic(name: str, seed: int, kwargs: dict[str, Any], frozen_dtype: torch.dtype,
                   device: torch.device) -> BuiltViT:
    """timm's eager build (float32, weights loaded by the model itself), then cast."""
    log.info("%s loads its weights itself: built in float32 first, then cast", name)
    with torch.random.fork_rng(devices=[]):
        vit = create_seeded(name, True, seed, kwargs)
    fingerprint = state_fingerprint(vit)
    for tensor_name, tensor in vit.state_dict(keep_vars=True).items():
        place(vit, tensor_name, tensor.detach().to(dtype=stored_dtype(tensor, frozen_dtype)))
    return BuiltViT(vit.to(device), fingerprint)


def build_frozen_vit(name: str, pretrained: bool = False, checkpoint: str | None = None, seed: int = 0,
                     model_kwargs: dict[str, Any] | None = None, frozen_dtype: torch.dtype = torch.float32,
                     device: str | torch.device = "cpu") -> BuiltViT:
    """Creates a headless timm ViT at timm's own image size, its weights in `frozen_dtype` on `device`.

    Args:
        name: any supported timm ViT name (see `vitadapter.backbone.families`).
        pretrained: load timm's pretrained weights: from the local Hugging Face cache when they are there (no
            network call), else downloaded; with neither, `PretrainedWeightsUnavailable` says what to do.
        checkpoint: a local weights file (.safetensors, .pth, .bin; .npz for JAX ViTs), adapted by timm.
        seed: initialisation seed when no weights are loaded (and for tensors a file lacks).
        model_kwargs: extra timm constructor arguments (e.g. `depth`, `patch_size` for demos).
        frozen_dtype: the dtype the weight matrices are kept in (`vitadapter.backbone.precision`).
        device: where the tensors are made; "meta" builds the structure only (in the kept dtypes).

    Returns:
        The model and its fingerprint.
    """
    device = torch.device(device)
    if device.type == "meta":  # the structure alone: no weights file, no download
        _, kwargs = timm_arguments(name, False, None, model_kwargs)
        with torch.random.fork_rng(devices=[]), torch.device(META):
            vit = create_seeded(name, False, seed, kwargs)
        for tensor_name, tensor in vit.state_dict(keep_vars=True).items():  # the dtypes a real build keeps
            place(vit, tensor_name, tensor.detach().to(stored_dtype(tensor, frozen_dtype)))
        return BuiltViT(vit, None)
    pretrained, kwargs = timm_arguments(name, pretrained, checkpoint, model_kwargs)
    if pretrained:
        return _build_loaded(name, seed, kwargs, frozen_dtype, device)
    log.warning(
        "Backbone %r has RANDOM weights (model.backbone.pretrained=false, seed %d): its features carry no "
        "knowledge. Fine for demos and tests; for real use set model.backbone.pretrained=true or "
        "model.backbone.checkpoint=/path/to/weights.",
        name,
        seed,
    )
    return _build_random(name, seed, kwargs, frozen_dtype, device)


def create_timm_vit(name: str, pretrained: bool = False, checkpoint: str | None = None, seed: int = 0,
                    model_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The float32 timm ViT of `build_frozen_vit` (same arguments), e.g. to save its weights to a file."""
    return build_frozen_vit(name, pretrained, checkpoint, seed, model_kwargs).vit
