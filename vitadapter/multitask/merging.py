"""Merging the trained PEFT tensors of several checkpoints into one ordinary inference checkpoint.

The checkpoints must train one method, with the same hyper-parameters, on the same frozen ViT (fingerprint);
the neck and heads come from one of them (`head_from`). Weights w_i, one per checkpoint; per method:

* LoRA (Hu et al., ICLR 2022): the weighted sum of the updates, exactly, as one LoRA of rank r' = sum r_i
  (no dense delta): sum w_i s_i B_i A_i = s' [c_1 B_1 | ... | c_N B_N] [A_1; ...; A_N] with c_i = w_i s_i / s',
  where s = alpha / r (alpha / sqrt(r) with `use_rslora`) is peft's scaling and s' that of the `head_from`
  checkpoint, kept by setting alpha' = s' r' (s' sqrt(r') with rslora). Any weights (task arithmetic, Ilharco et
  al., ICLR 2023: weights need not sum to 1); r and alpha may differ between the checkpoints.
* SSF, BitFit, norm tuning, full fine-tuning: the weighted mean of each tensor (weights sum to 1). Each tensor
  belongs to one channel of a frozen layer and enters its merged weights linearly, so this is the weighted mean
  of the checkpoints' merged ViT weights: a model soup (Wortsman et al., ICML 2022).
* Bottleneck, Convpass, VPT: the weighted mean of each tensor (weights sum to 1), as AdapterSoup (Chronopoulou
  et al., EACL 2023 Findings). Hidden units and prompts can be permuted without changing a model, so the mean
  is meaningful for checkpoints trained from the same initialisation (same seed and config), as soups assume.
* none: nothing to average; the neck and heads are copied.
* Refused: DoRA, the generic peft tuners and methods without a rule here (`REFUSED_METHODS`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vitadapter.checkpoint import META_KEY, TrainedCheckpoint, atomic_torch_save

SUMMED_METHODS = ("lora",)
AVERAGED_METHODS = ("bottleneck", "convpass", "vpt", "ssf", "bitfit", "norm", "full", "none")
REFUSED_METHODS = {
    "dora": "DoRA divides each updated weight by its norm before its magnitude scales it, so no DoRA (of any rank) "
            "equals a weighted sum of DoRA models; merge LoRA checkpoints instead, or export each with "
            "scripts/export_merged.py and average the plain timm weights",
    "peft": "the generic peft tuners (LoHa, LoKr, OFT, ...) are not linear in their tensors, so averaging them "
            "averages no models; among peft tuners only model/adapter=lora merges",
}
# model.adapter fields that do not change what a trained model computes (training- or init-only)
UNCOMPARED_FIELDS = ("_target_", "lr", "merge", "dropout", "init_std")
# LoRA's fields that its merge rule handles, and the peft options it knows (others are refused)
LORA_RULE_FIELDS = ("r", "alpha", "options")
LORA_OPTIONS = ("use_rslora", "init_lora_weights", "lora_bias", "fan_in_fan_out")
LORA_UNCOMPARED_OPTIONS = ("use_rslora", "init_lora_weights")
# model.backbone fields that leave the method's computation alone (the fingerprint checks the weights)
BACKBONE_UNCOMPARED = ("checkpoint", "grad_checkpointing", "out_indices")
# top-level entries an inference checkpoint keeps: loops, optimiser, scheduler, callback and loader state go
KEPT_ENTRIES = ("epoch", "global_step", "pytorch-lightning_version", "hyper_parameters", "hparams_name")

# LoRA's factors in peft's names: `<layer>.lora_A.<adapter name>.weight`, `<layer>.lora_B.<adapter name>.bias`
LORA_FACTORS = {"lora_A": "A", "lora_B": "B"}
_UNSET = "<unset>"


class MergeError(ValueError):
    """The checkpoints cannot be merged; the message names the checkpoints and the key or field."""


@dataclass
class Source:
    """One checkpoint to merge: its path, weight and contents."""

    path: Path
    weight: float
    checkpoint: TrainedCheckpoint

    @property
    def meta(self) -> dict[str, Any]:
        """The checkpoint's `vitadapter` entry (fingerprint, run config)."""
        return self.checkpoint.meta

    @property
    def adapter(self) -> dict[str, Any]:
        """The run config's `model.adapter` (`{"name": "none"}` when it has none)."""
        return self.checkpoint.adapter_config

    def method_tensors(self) -> dict[str, Tensor]:
        """The method's tensors (the checkpoint's "adapter" part) named from the encoder."""
        tensors = self.checkpoint.tensors("adapter")
        encoders = {key.encoder for key in tensors}
        if len(encoders) > 1:
            raise MergeError(f"{self.path}: method tensors under several encoders ({sorted(encoders)})")
        return {key.name: tensor for key, tensor in tensors.items()}


def load_source(path: str | Path, weight: float) -> Source:
    """Loads a train.py checkpoint to merge, refusing files without vitadapter's run config."""
    checkpoint = TrainedCheckpoint.read(path, error=MergeError)
    if not checkpoint.has_run_config:
        raise MergeError(f"{path} is not a checkpoint written by vitadapter's train.py (no run config in it)")
    return Source(Path(path), float(weight), checkpoint)


def first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
    """The first dotted key where two config trees differ, with both values; None if equal."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key, _UNSET), b.get(key, _UNSET), f"{path}.{key}")
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def compared_adapter(source: Source) -> dict[str, Any]:
    """The `model.adapter` fields that must agree between merged checkpoints."""
    adapter = {k: v for k, v in source.adapter.items() if k not in UNCOMPARED_FIELDS}
    if adapter["name"] not in SUMMED_METHODS:
        return adapter
    options = source.adapter.get("options") or {}
    unknown = sorted(set(options) - set(LORA_OPTIONS))
    if unknown:
        raise MergeError(f"{source.path}: model.adapter.options.{unknown[0]} has no merge rule (merging knows "
                         f"{', '.join(LORA_OPTIONS)}); merge checkpoints trained without it")
    adapter = {k: v for k, v in adapter.items() if k not in LORA_RULE_FIELDS}
    adapter["options"] = {k: v for k, v in options.items() if k not in LORA_UNCOMPARED_OPTIONS}
    return adapter


def check_compatible(sources: Sequence[Source]) -> None:
    """Refuses different frozen ViTs, methods or method hyper-parameters, naming the checkpoints and field."""
    first = sources[0]
    for other in sources[1:]:
        pair = f"{first.path} and {other.path}"
        mine, theirs = first.meta["backbone_fingerprint"], other.meta["backbone_fingerprint"]
        if mine != theirs:
            raise MergeError(f"{pair} were trained on different frozen ViTs: backbone_fingerprint {mine[:16]} "
                             f"({first.meta['backbone_name']}) vs {theirs[:16]} ({other.meta['backbone_name']}); "
                             "only checkpoints of the same frozen weights merge")
        if first.adapter["name"] != other.adapter["name"]:
            raise MergeError(f"{pair} train different methods: model.adapter.name={first.adapter['name']!r} vs "
                             f"{other.adapter['name']!r}; only checkpoints of one method merge")
        backbones = [{k: v for k, v in s.meta["config"]["model"]["backbone"].items() if k not in BACKBONE_UNCOMPARED}
                     for s in (first, other)]
        for found in (first_difference(compared_adapter(first), compared_adapter(other), "model.adapter"),
                      first_difference(*backbones, "model.backbone")):
            if found:
                key, a, b = found
                raise MergeError(f"{pair} differ in {key}: {a!r} vs {b!r}; it changes what the method computes, "
                                 "so their tensors do not merge")
    name = first.adapter["name"]
    if name in REFUSED_METHODS:
        raise MergeError(f"{first.path}: model.adapter.name={name!r} cannot be merged: {REFUSED_METHODS[name]}")
    if name not in SUMMED_METHODS + AVERAGED_METHODS:
        raise MergeError(f"{first.path}: model.adapter.name={name!r} has no merge rule; methods that merge: "
                         f"{', '.join(SUMMED_METHODS + AVERAGED_METHODS)}")
    compared_adapter(first)  # a single LoRA checkpoint's options are checked too


def check_same_tensors(sources: Sequence[Source], tensors: Sequence[dict[str, Tensor]]) -> None:
    """Refuses checkpoints whose method tensors have different names."""
    for source, own in zip(sources[1:], tensors[1:]):
        only = sorted(set(tensors[0]) ^ set(own))
        if only:
            holder = sources[0].path if only[0] in tensors[0] else source.path
            raise MergeError(f"{sources[0].path} and {source.path} hold different method tensors: encoder.{only[0]} "
                             f"is only in {holder} ({len(only)} such keys); check model.adapter.layers and placement")


def _check_shape(sources: Sequence[Source], parts: Sequence[Tensor], name: str, dims: slice = slice(None)) -> None:
    for source, part in zip(sources[1:], parts[1:]):
        if part.shape[dims] != parts[0].shape[dims] or part.dtype != parts[0].dtype:
            raise MergeError(f"{sources[0].path} and {source.path} differ in the shape of encoder.{name}: "
                             f"{tuple(parts[0].shape)} {parts[0].dtype} vs {tuple(part.shape)} {part.dtype}")


def weighted_mean(sources: Sequence[Source], tensors: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """sum_i w_i t_i for every method tensor (accumulated in float64); weights must sum to 1."""
    weights = [s.weight for s in sources]
    if tensors[0] and abs(sum(weights) - 1.0) > 1e-6:
        raise MergeError(f"weights {weights} sum to {sum(weights):g}: model.adapter.name="
                         f"{sources[0].adapter['name']!r} merges by a weighted mean of its tensors, so the weights "
                         "must sum to 1 (LoRA sums its updates and takes any weights)")
    merged = {}
    for name, first in tensors[0].items():
        parts = [own[name] for own in tensors]
        _check_shape(sources, parts, name)
        if not first.is_floating_point():
            if any(not torch.equal(part, first) for part in parts):
                raise MergeError(f"encoder.{name} is an integer tensor that differs between the checkpoints")
            merged[name] = first.clone()
            continue
        total = sum(w * part.double() for w, part in zip(weights, parts))
        merged[name] = total.to(first.dtype)
    return merged


def lora_scaling(adapter: Mapping[str, Any]) -> float:
    """peft's LoRA scaling: alpha / r, or alpha / sqrt(r) with options.use_rslora."""
    rslora = bool((adapter.get("options") or {}).get("use_rslora"))
    return float(adapter["alpha"]) / (math.sqrt(adapter["r"]) if rslora else adapter["r"])


def merged_lora_adapter(sources: Sequence[Source], head: Source) -> dict[str, Any]:
    """`head`'s model.adapter with rank sum r_i and alpha set so that its scaling stays `head`'s."""
    adapter = copy.deepcopy(head.adapter)
    rank = sum(int(s.adapter["r"]) for s in sources)
    rslora = bool((adapter.get("options") or {}).get("use_rslora"))
    adapter["r"] = rank
    adapter["alpha"] = lora_scaling(head.adapter) * (math.sqrt(rank) if rslora else rank)
    return adapter


def lora_factor(name: str) -> tuple[str, str] | None:
    """("A" or "B", "weight" or "bias") of a LoRA factor's tensor name; None for any other tensor."""
    components = name.split(".")
    if len(components) < 4 or components[-3] not in LORA_FACTORS or components[-1] not in ("weight", "bias"):
        return None
    return LORA_FACTORS[components[-3]], components[-1]


def lora_sum(sources: Sequence[Source], tensors: Sequence[dict[str, Tensor]],
             adapter: Mapping[str, Any]) -> dict[str, Tensor]:
    """A = [A_1; ...; A_N], B = [c_1 B_1 | ... | c_N B_N], B's bias sum c_i b_i, with c_i = w_i s_i / s'."""
    target = lora_scaling(adapter)
    factors = [s.weight * lora_scaling(s.adapter) / target for s in sources]
    merged = {}
    for name in tensors[0]:
        factor = lora_factor(name)
        if factor is None:
            raise MergeError(f"{sources[0].path}: encoder.{name} is not a LoRA factor; LoRA merging has no rule for it")
        parts = [own[name] for own in tensors]
        if factor[0] == "A":
            _check_shape(sources, parts, name, slice(1, None))
            merged[name] = torch.cat(parts, dim=0)
            continue
        if factor[1] == "weight":
            _check_shape(sources, parts, name, slice(0, 1))
            merged[name] = torch.cat([(c * part.double()).to(part.dtype) for c, part in zip(factors, parts)], dim=1)
        else:
            _check_shape(sources, parts, name)
            merged[name] = sum(c * part.double() for c, part in zip(factors, parts)).to(parts[0].dtype)
    return merged


def head_index(paths: Sequence[str | Path], head_from: int | str | Path) -> int:
    """The position of the checkpoint whose neck and heads are kept: an index (0-based) or one of `paths`."""
    if isinstance(head_from, int):
        if not -len(paths) <= head_from < len(paths):
            raise MergeError(f"head_from={head_from}: give 0..{len(paths) - 1} (0-based) or one of the paths")
        return head_from % len(paths)
    wanted = Path(head_from).resolve()
    for index, path in enumerate(paths):
        if Path(path).resolve() == wanted:
            return index
    raise MergeError(f"head_from={str(head_from)!r} is not one of the merged checkpoints {[str(p) for p in paths]}")


def merge_checkpoints(paths: Sequence[str | Path], weights: Sequence[float] | None = None,
                      head_from: int | str | Path = 0) -> dict[str, Any]:
    """Merges the PEFT tensors of train.py checkpoints (see the module docstring for the rule per method).

    Args:
        paths: checkpoints written by train.py: one method, same hyper-parameters, same frozen ViT.
        weights: one per checkpoint; None: 1/N each. Averaged methods need them to sum to 1.
        head_from: the checkpoint whose neck, heads, data and run config are kept: index or path.

    Returns:
        An inference checkpoint (state dict, vitadapter entry with `merged_from`; no optimiser, scheduler or loop
        state) that eval.py and predict.py take.
    """
    if not paths:
        raise MergeError("name at least one checkpoint to merge")
    weights = [1.0 / len(paths)] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths):
        raise MergeError(f"{len(weights)} weights for {len(paths)} checkpoints ({', '.join(map(str, paths))}): "
                         "give one weight per checkpoint")
    if not all(math.isfinite(w) for w in weights):
        raise MergeError(f"weights {weights} must be finite numbers")
    index = head_index(paths, head_from)
    sources = [load_source(path, weight) for path, weight in zip(paths, weights)]
    check_compatible(sources)
    tensors = [source.method_tensors() for source in sources]
    check_same_tensors(sources, tensors)
    head = sources[index]
    config = copy.deepcopy(head.meta["config"])
    if head.adapter["name"] in SUMMED_METHODS:
        config["model"]["adapter"] = merged_lora_adapter(sources, head)
        merged = lora_sum(sources, tensors, config["model"]["adapter"])
    else:
        merged = weighted_mean(sources, tensors)
    state = {key.key: merged[key.name] if key.part == "adapter" else tensor
             for key, tensor in head.checkpoint.tensors().items()}
    provenance = [{"path": str(s.path.resolve()), "weight": s.weight,
                   **({"merged_from": s.meta["merged_from"]} if "merged_from" in s.meta else {})} for s in sources]
    meta = {**head.meta, "config": config, "merged_from": provenance, "neck_and_heads_from": str(head.path.resolve())}
    return {**{k: head.checkpoint.contents[k] for k in KEPT_ENTRIES if k in head.checkpoint.contents},
            "state_dict": state, META_KEY: meta}


def merge_summary(checkpoint: Mapping[str, Any]) -> str:
    """One line saying what a merged checkpoint holds (for the script's output)."""
    meta = checkpoint[META_KEY]
    adapter = meta["config"]["model"].get("adapter") or {"name": "none"}
    sources = ", ".join(f"{Path(s['path']).name} x {s['weight']:g}" for s in meta["merged_from"])
    rule = (f"summed LoRA updates as one LoRA of rank {adapter['r']} (alpha {adapter['alpha']:g})"
            if adapter["name"] in SUMMED_METHODS else f"weighted mean of the {adapter['name']} tensors")
    return f"{rule} of {sources}; neck and heads of {Path(meta['neck_and_heads_from']).name}"


def save_merged(checkpoint: dict[str, Any], output: str | Path) -> Path:
    """Writes a merged checkpoint atomically (a kill leaves no torn file); returns its path."""
    path = Path(output)
    atomic_torch_save(checkpoint, path)
    return path
