"""A model built on the meta device whose every tensor can later be computed, one at a time, exactly as an eager build.

timm initialises a ViT in its constructor (PyTorch's layer inits, then its own `init_weights`). On the meta
device those writes do nothing, so the random values a seed gives would be lost. `DeferredInit` watches the
construction at the ATen level and keeps, per meta storage, the writes that made its value (an `empty`, then
`uniform_`, `erfinv_`, `mul_`, ..., `div_`); `materialize` replays them on a fresh float32 tensor of the real
device later. Random writes draw from the CPU generator as the eager build does: each one runs for real, on a
throw-away tensor of the same shape, at its place in the construction (so every later draw sees the generator
where an eager build leaves it), and the generator state before it is kept so the replay draws the same numbers.

So a 7B model's random init needs one float32 tensor at a time beside the built model, yet every tensor equals,
bit for bit, the one `timm.create_model` would make on the CPU from the same seed. A write that overwrites a
whole storage (`uniform_`, `fill_`, `zero_`, `copy_`) drops the writes before it: construction-time inits that
`init_weights` replaces are not replayed. Ops that read a meta tensor's values during construction (the rare
functional op on a meta input, `.item()`) get its value computed on the spot.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from vitadapter.utils.heap import release_free_heap

# torch.nn.init functions that return early on a meta tensor (no op reaches the dispatcher): recorded as one step each
_SKIPPED_ON_META = ("trunc_normal_", "dirac_", "orthogonal_", "sparse_")
# ops that create a tensor without values
_EMPTY = {torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default, torch.ops.aten.empty_like.default}
# in-place ops whose result does not depend on the tensor's previous values
_OVERWRITES = {"uniform_", "normal_", "random_", "bernoulli_", "exponential_", "geometric_", "log_normal_",
               "cauchy_", "fill_", "zero_", "copy_"}
# the state of a random op recorded with random_draws=False: it cannot be replayed
_NOT_DRAWN = torch.empty(0, dtype=torch.uint8)


class NotDrawnError(RuntimeError):
    """A tensor's value depends on a random init that was recorded without its draws (`random_draws=False`)."""


@dataclass(frozen=True)
class _Target:
    """Where an in-place op writes inside its storage: the written tensor's geometry."""

    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int

    @staticmethod
    def of(tensor: Tensor) -> _Target:
        return _Target(tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset())

    def on(self, storage: Tensor) -> Tensor:
        """The written view of a real flat storage."""
        return storage.as_strided(self.size, self.stride, self.offset)


@dataclass
class _Step:
    """One recorded op on a storage, replayed as `func(*args, **kwargs)`: an in-place op gets the written view in place
    of the `_Target` among its arguments; an op that created the tensor (`creates`) has its result copied into `target`.
    `rng_state` is the generator's state just before a random op."""

    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    target: _Target
    creates: bool = False
    rng_state: Tensor | None = None


@dataclass
class _Source:
    """How one meta storage's values are made: its element dtype and size, and the ops in order."""

    dtype: torch.dtype
    numel: int
    steps: list[_Step] = field(default_factory=list)


def _storage_key(tensor: Tensor) -> int:
    return tensor.untyped_storage()._cdata


def _written(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Tensor]:
    """The tensors `func` writes in place (its `Tensor(a!)` arguments)."""
    schema, written = func._schema, []
    for position, argument in enumerate(schema.arguments):
        if argument.alias_info is None or not argument.alias_info.is_write:
            continue
        value = kwargs.get(argument.name) if argument.kwarg_only or position >= len(args) else args[position]
        if isinstance(value, Tensor):
            written.append(value)
    return written


def _on_cpu(value: Any) -> Any:
    return torch.device("cpu") if isinstance(value, torch.device) and value.type == "meta" else value


def _is_random(func: Any) -> bool:
    return torch.Tag.nondeterministic_seeded in func.tags


def _covers(tensor: Tensor, source: _Source) -> bool:
    return tensor.is_contiguous() and tensor.storage_offset() == 0 and tensor.numel() == source.numel


def _overwrites(func: Any, tensor: Tensor, source: _Source) -> bool:
    return func._schema.name.split("::")[-1] in _OVERWRITES and _covers(tensor, source)


class DeferredInit(TorchDispatchMode):
    """Records a construction under `torch.device("meta")` so `materialize` can compute each meta tensor later.

    Use as `with torch.device("meta"), DeferredInit() as init: model = build()`, then `init.materialize(t)` for
    each of the model's tensors (any order, any time). Ops on real tensors run as usual.

    Args:
        random_draws: draw random inits as the eager build does (False: skip the draws, for a model whose weights
            will be loaded; then only tensors made without randomness, e.g. index and RoPE buffers, materialise).
    """

    def __init__(self, random_draws: bool = True) -> None:
        super().__init__()
        self.random_draws = random_draws
        self._sources: dict[int, _Source] = {}
        self._alive: list[Tensor] = []  # keeps every recorded storage alive, so no key is reused
        self._patches = ExitStack()

    def __enter__(self) -> DeferredInit:
        for name in _SKIPPED_ON_META:
            init_ = getattr(torch.nn.init, name)
            self._patches.enter_context(mock.patch.object(torch.nn.init, name, self._deferred(init_)))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._patches.close()

    def _deferred(self, init_: Any) -> Any:
        """`init_` (a whole-tensor init of torch.nn.init) recorded as one step on a meta tensor."""

        def deferred(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            if not tensor.is_meta:
                return init_(tensor, *args, **kwargs)
            source, geometry = self._source(tensor), _Target.of(tensor)

            def draw() -> None:
                scratch = torch.empty_strided(geometry.size, geometry.stride, dtype=tensor.dtype, device="cpu")
                init_(scratch, *args, **kwargs)

            state = self._draw(draw, kwargs)
            if _covers(tensor, source):
                source.steps.clear()
            source.steps.append(_Step(init_, (geometry, *args), kwargs, geometry, rng_state=state))
            return tensor

        return deferred

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        leaves = tree_leaves((args, kwargs))
        metas = [t for t in leaves if isinstance(t, Tensor) and t.is_meta]
        to_meta = any(isinstance(v, torch.device) and v.type == "meta" for v in leaves)
        if not metas and not to_meta:
            return func(*args, **kwargs)
        if func.is_view:
            return func(*args, **kwargs)
        written = [t for t in _written(func, args, kwargs) if t.is_meta]
        if written:
            self._record_write(func, args, kwargs, written)
            return func(*args, **kwargs)
        if not metas:  # a factory (or a copy of a real tensor) onto the meta device
            return self._record_creation(func, args, kwargs)
        # a functional op reading meta tensors: computed now, from their current values
        out = func(*args, **kwargs)
        meta_outs = [t for t in tree_leaves(out) if isinstance(t, Tensor) and t.is_meta]
        try:
            real = func(*tree_map(self._current_value, args), **tree_map(self._current_value, kwargs))
        except NotDrawnError:
            if len(meta_outs) != len(tree_leaves(out)):
                raise
            for meta_out in meta_outs:  # depends on an undrawn init: cannot be computed either
                self._new_source(meta_out).steps.append(_Step(_copy_of, (), {}, _Target.of(meta_out), True, _NOT_DRAWN))
            return out
        for meta_out, real_out in zip(tree_leaves(out), tree_leaves(real)):
            if isinstance(meta_out, Tensor) and meta_out.is_meta:
                step = _Step(_copy_of, (real_out,), {}, _Target.of(meta_out), creates=True)
                self._new_source(meta_out).steps.append(step)
        return out if meta_outs else real

    def _new_source(self, tensor: Tensor) -> _Source:
        storage = tensor.untyped_storage()
        source = _Source(tensor.dtype, storage.nbytes() // tensor.element_size())
        self._sources[_storage_key(tensor)] = source
        self._alive.append(tensor)
        return source

    def _source(self, tensor: Tensor) -> _Source:
        source = self._sources.get(_storage_key(tensor))
        return source if source is not None else self._new_source(tensor)

    def _record_creation(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        out = func(*args, **kwargs)
        if func in _EMPTY:
            self._new_source(out)
            return out
        real_args = tree_map(_constant, args)
        real_kwargs = tree_map(_on_cpu, tree_map(_constant, kwargs))
        state = None
        if _is_random(func):
            state = self._draw(lambda: func(*real_args, **real_kwargs), real_kwargs)
        self._new_source(out).steps.append(_Step(func, real_args, real_kwargs, _Target.of(out), True, state))
        return out

    def _record_write(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], written: list[Tensor]) -> None:
        if len(written) != 1:
            raise NotImplementedError(f"{func} writes {len(written)} meta tensors; deferred init records one")
        target = written[0]
        source = self._source(target)
        geometry = _Target.of(target)
        try:
            args = tree_map(lambda v: geometry if v is target else self._current_value(v), args)
            kwargs = tree_map(lambda v: geometry if v is target else self._current_value(v), kwargs)
        except NotDrawnError:  # reads an undrawn init: the target cannot be computed either
            source.steps.append(_Step(func, (), {}, geometry, rng_state=_NOT_DRAWN))
            return
        state = None
        if _is_random(func):
            def draw() -> None:  # the same draws as the eager build, into a tensor then dropped
                scratch = torch.empty_strided(geometry.size, geometry.stride, dtype=target.dtype, device="cpu")
                func(*_bind(args, scratch), **_bind(kwargs, scratch))

            state = self._draw(draw, kwargs)
        if _overwrites(func, target, source):
            source.steps.clear()
        source.steps.append(_Step(func, args, kwargs, geometry, rng_state=state))

    def _draw(self, run: Any, kwargs: dict[str, Any]) -> Tensor:
        """The generator state before a random op; runs it (advancing the generator as the eager build) if drawing."""
        if not self.random_draws:
            return _NOT_DRAWN
        state = _generator(kwargs).get_state()
        run()
        release_free_heap()  # the draw's throw-away tensor, freed: else the heap keeps a float32 model's worth
        return state

    def _current_value(self, value: Any) -> Any:
        if isinstance(value, Tensor) and value.is_meta:
            return self.materialize(value)
        return _constant(value)

    def materialize(self, tensor: Tensor, device: torch.device | str = "cpu") -> Tensor:
        """The values of a meta tensor recorded here, computed on `device` in its own dtype.

        Every generator the replay draws from is left as it was.
        """
        source = self._sources.get(_storage_key(tensor))
        if source is None:
            raise KeyError(f"a meta tensor of shape {tuple(tensor.shape)} was not created under this DeferredInit")
        storage = torch.zeros(source.numel, dtype=source.dtype, device="cpu")
        generators = {id(g): g for g in (_generator(step.kwargs) for step in source.steps)}
        states = {key: generator.get_state() for key, generator in generators.items()}
        try:
            for step in source.steps:
                _replay(step, storage)
        finally:
            for key, generator in generators.items():
                generator.set_state(states[key])
        return _Target.of(tensor).on(storage).to(device)


def _constant(value: Any) -> Any:
    """A real tensor argument kept for a later replay (a copy: the caller may change it)."""
    return value.detach().clone() if isinstance(value, Tensor) else value


def _copy_of(value: Tensor) -> Tensor:
    return value


def _generator(kwargs: dict[str, Any]) -> torch.Generator:
    """The generator a random op draws from (the default CPU generator unless one is given)."""
    return kwargs.get("generator") or torch.default_generator


def _bind(tree: Any, tensor: Tensor) -> Any:
    return tree_map(lambda v: tensor if isinstance(v, _Target) else v, tree)


def _replay(step: _Step, storage: Tensor) -> None:
    if step.rng_state is _NOT_DRAWN:
        raise NotDrawnError(f"{step.func} was recorded without drawing its random numbers")
    if step.rng_state is not None:
        _generator(step.kwargs).set_state(step.rng_state)
    view = step.target.on(storage)
    if step.creates:
        view.copy_(step.func(*step.args, **step.kwargs))
        return
    step.func(*_bind(step.args, view), **_bind(step.kwargs, view))
