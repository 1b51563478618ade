"""AdapterFusion: attention over the frozen residual adapters of several trained checkpoints.

Pfeiffer et al., "AdapterFusion: Non-Destructive Task Composition for Transfer Learning", EACL 2021.
Every adapted branch of the sources (bottleneck or Convpass, `residual_adapter.py`) gets one fusion
module. With h the branch's output (the scaled sublayer output) and d_i the delta of source i's adapter
(fed with h, or with the sublayer's input for a parallel source), it adds to the residual branch

    alpha_i = softmax_i( <Q h, K (h + d_i)> / (sqrt(a) * T) ),    fused = V( sum_i alpha_i d_i )

Q starts at zero, so the sources start equally weighted, and V at the identity (the paper's value
init), so one source reproduces its adapter exactly. V is linear and the weights sum to one, so
applying it after the weighted sum equals the paper's sum of V d_i. Only Q, K and V train; the sources
are loaded frozen from their checkpoints whenever the model is built, are left out of checkpoints, and
are verified on load by content hash.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vitadapter.adapters.base import LoadedFrozenModules, MethodConfig, MethodHooks
from vitadapter.adapters.registry import build_method, register_method
from vitadapter.adapters.residual_adapter import POSITIONS, AdaptedBranch, ResidualAdapterConfig
from vitadapter.checkpoint import TrainedCheckpoint

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone

log = logging.getLogger(__name__)

BRANCH_POSITIONS = {branch: position for position, branch in POSITIONS.items()}


class FusionSourceError(ValueError):
    """A fusion source cannot be used: not train.py's, another backbone, another method or placement, or changed.
    (A missing source raises FileNotFoundError.)"""


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class FusionSource:
    """One source checkpoint's adapters, read and checked.

    Attributes:
        path: the path as configured.
        sha256: the file's content hash.
        method: the source's adapter config (bottleneck or Convpass).
        tensors: (block, position) -> that adapter's state dict.
    """

    path: str
    sha256: str
    method: ResidualAdapterConfig
    tensors: dict[tuple[int, str], dict[str, Tensor]]

    def adapter(self, index: int, position: str, backbone: ViTBackbone) -> nn.Module:
        """The source's adapter of block `index`, branch `position`, with its trained weights."""
        adapter = self.method.build(backbone.embed_dim, backbone.num_prefix_tokens)
        try:
            adapter.load_state_dict(self.tensors[index, position])
        except RuntimeError as error:
            raise FusionSourceError(f"fusion source {self.path}: its block {index} {position} adapter does not load "
                                    f"into a {self.method.method_name} adapter of width {backbone.embed_dim}: {error}")
        return adapter


def residual_adapters(checkpoint: TrainedCheckpoint) -> dict[tuple[int, str], dict[str, Tensor]]:
    """A checkpoint's residual adapters: (block, position) -> that adapter's state dict, from the method's tensors
    at `backbone.vit.blocks.N.drop_path{1,2}.adapter.` inside the encoder (of a segmentation or detection task)."""
    tensors: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, value in checkpoint.tensors("adapter").items():
        branch, _, rest = (key.in_block or "").partition(".")
        holder, _, name = rest.partition(".")
        if branch in BRANCH_POSITIONS and holder == "adapter" and name:
            tensors.setdefault((key.block, BRANCH_POSITIONS[branch]), {})[name] = value
    return tensors


def load_source(path: str, backbone: ViTBackbone) -> FusionSource:
    """Reads a train.py checkpoint's residual adapters after checking its backbone and method.

    Args:
        path: the checkpoint (`model.adapter.sources` entry).
        backbone: the target's frozen ViT, whose fingerprint the source must have been trained on.

    Returns:
        The source's adapters and identity.
    """
    checkpoint = TrainedCheckpoint.read(path, f"fusion source {path}", error=FusionSourceError)
    checkpoint.check_trained_on(backbone, error=FusionSourceError)
    fields = {k: v for k, v in checkpoint.adapter_config.items() if k not in ("_target_", "name")}
    name = checkpoint.method_name
    method = build_method(name, **fields) if name != "none" else None
    if not isinstance(method, ResidualAdapterConfig):
        raise FusionSourceError(f"fusion source {path} was trained with model.adapter.name={name!r}; AdapterFusion "
                                "fuses residual adapters: bottleneck, convpass (and its variants)")
    tensors = residual_adapters(checkpoint)
    if not tensors:
        raise FusionSourceError(f"fusion source {path} holds no adapter tensors (backbone.vit.blocks.*.adapter.*)")
    return FusionSource(path, file_sha256(path), method, tensors)


def check_same_placement(sources: Sequence[FusionSource]) -> None:
    """Refuses sources whose adapters sit in different blocks or branches, naming the source and the field."""
    first = sources[0]
    blocks = sorted({index for index, _ in first.tensors})
    for source in sources[1:]:
        own_blocks = sorted({index for index, _ in source.tensors})
        if own_blocks != blocks:
            raise FusionSourceError(
                f"fusion source {source.path} adapts blocks {own_blocks} but {first.path} adapts {blocks} "
                "(model.adapter.layers / drop_below): every source must adapt the same blocks")
        if set(source.tensors) != set(first.tensors):
            raise FusionSourceError(
                f"fusion source {source.path} adapts branches {sorted({p for _, p in source.tensors})} but "
                f"{first.path} adapts {sorted({p for _, p in first.tensors})} (model.adapter.position): every source "
                "must adapt the same branches of the same blocks")


class AdapterFusion(nn.Module):
    """Attention over frozen source adapters at one branch; returns the fused delta (the caller adds it).

    Args:
        sources: the source adapters (frozen here).
        modes: each source's mode: "sequential" (fed with the branch output) or "parallel" (the sublayer's input).
        dim: token width.
        attention_dim: width of the query and key projections.
        value: learn a value projection (identity-initialised); False: fuse the deltas as they are.
        temperature: divides the attention logits (after 1/sqrt(attention_dim)).
    """

    def __init__(self, sources: Sequence[nn.Module], modes: Sequence[str], dim: int, attention_dim: int,
                 value: bool = True, temperature: float = 1.0) -> None:
        super().__init__()
        self.sources = LoadedFrozenModules(sources)
        self.modes = tuple(modes)
        self.query = nn.Linear(dim, attention_dim)
        nn.init.zeros_(self.query.weight)
        nn.init.zeros_(self.query.bias)
        self.key = nn.Linear(dim, attention_dim)
        self.value = nn.Linear(dim, dim) if value else None
        if self.value is not None:
            nn.init.eye_(self.value.weight)
            nn.init.zeros_(self.value.bias)
        self.logit_scale = 1.0 / (math.sqrt(attention_dim) * temperature)

    def deltas(self, branch_output: Tensor, sublayer_input: Tensor) -> Tensor:
        """The sources' deltas, stacked: B×L×N×D."""
        return torch.stack([source(branch_output if mode == "sequential" else sublayer_input)
                            for source, mode in zip(self.sources, self.modes)], dim=-2)

    def weights(self, branch_output: Tensor, deltas: Tensor) -> Tensor:
        """The attention over the sources, B×L×N (sums to one over N)."""
        query = self.query(branch_output).unsqueeze(-2)
        keys = self.key(branch_output.unsqueeze(-2) + deltas)
        return ((query * keys).sum(-1) * self.logit_scale).softmax(dim=-1)

    def forward(self, branch_output: Tensor, sublayer_input: Tensor) -> Tensor:
        deltas = self.deltas(branch_output, sublayer_input)
        fused = (self.weights(branch_output, deltas).unsqueeze(-1) * deltas).sum(dim=-2)
        return self.value(fused) if self.value is not None else fused


@register_method("fusion")
@dataclass
class AdapterFusionConfig(MethodConfig):
    """AdapterFusion over the frozen residual adapters of `sources` (train.py checkpoints on the same ViT)."""

    sources: Sequence[str] = field(
        default=(), metadata={"help": "train.py checkpoints whose bottleneck / Convpass adapters are fused, frozen"}
    )
    attention_dim: int | None = field(
        default=None, metadata={"help": "width of the query and key projections; null: the ViT's width (paper)"}
    )
    value: bool = field(default=True, metadata={"help": "learn an identity-initialised value projection (paper)"})
    temperature: float = field(default=1.0, metadata={"help": "softmax temperature of the attention over sources"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sources = (self.sources,) if isinstance(self.sources, str) else tuple(str(s) for s in self.sources)
        if not self.sources:
            raise ValueError("model.adapter.sources is empty: name the checkpoints to fuse, "
                             "model.adapter.sources=[A.ckpt,B.ckpt]")
        if self.layers is not None or self.drop_below:
            raise ValueError("AdapterFusion sits where its sources' adapters sit: model.adapter.layers and "
                             "drop_below do not apply (leave them at null and 0)")
        if self.attention_dim is not None and self.attention_dim < 1:
            raise ValueError(f"model.adapter.attention_dim must be >= 1, got {self.attention_dim}")
        if self.temperature <= 0:
            raise ValueError(f"model.adapter.temperature must be > 0, got {self.temperature}")
        self._loaded: list[dict[str, str]] = []

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        sources = [load_source(path, backbone) for path in self.sources]
        check_same_placement(sources)
        self._loaded = [{"path": s.path, "sha256": s.sha256} for s in sources]
        modes = [source.method.mode for source in sources]
        attention_dim = self.attention_dim or backbone.embed_dim
        for index, position in sorted(sources[0].tensors):
            if index >= backbone.used_depth:
                log.info("block %d comes after the last tapped block %d and never runs: not fused", index,
                         backbone.used_depth - 1)
                continue
            block = backbone.vit.blocks[index]
            branch_name = POSITIONS[position]
            branch, sublayer = getattr(block, branch_name, None), getattr(block, position, None)
            if branch is None or sublayer is None or isinstance(branch, AdaptedBranch):
                raise FusionSourceError(f"block {index} ({type(block).__name__}) has no free `{branch_name}` to fuse "
                                        f"the sources' {position} adapters on")
            fusion = AdapterFusion([s.adapter(index, position, backbone) for s in sources], modes,
                                   backbone.embed_dim, attention_dim, self.value, self.temperature)
            setattr(block, branch_name, AdaptedBranch(branch, sublayer, fusion, "both"))
        return None

    def checkpoint_record(self) -> dict[str, Any]:
        """The sources by path and content hash."""
        return {"fusion_sources": [dict(source) for source in self._loaded]}

    def check_checkpoint_record(self, record: dict[str, Any]) -> None:
        """Refuses a checkpoint whose sources are not, byte for byte, the ones this model loaded."""
        recorded = record.get("fusion_sources")
        if recorded is None:
            raise FusionSourceError("the checkpoint records no fusion sources: it was not trained with "
                                    "model/adapter=fusion, so it cannot load into a fusion model")
        if len(recorded) != len(self._loaded):
            raise FusionSourceError(f"the checkpoint fuses {len(recorded)} sources ({[r['path'] for r in recorded]}) "
                                    f"but model.adapter.sources names {len(self._loaded)}")
        for then, now in zip(recorded, self._loaded):
            if then["sha256"] != now["sha256"]:
                moved = "" if then["path"] == now["path"] else f" (trained from {then['path']})"
                raise FusionSourceError(
                    f"fusion source {now['path']}{moved} changed since this fusion was trained: sha256 "
                    f"{now['sha256'][:16]}, the checkpoint recorded {then['sha256'][:16]}. Restore that file "
                    "(model.adapter.sources=[...] may point to where it is now) or train the fusion again."
                )
