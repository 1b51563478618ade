"""LoRA, DoRA and other peft tuners on the Linear layers of a frozen ViT's blocks, mergeable into timm weights.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022: W x + (alpha / r) B A x with
B zero-initialised, so a fresh model computes the frozen features. Liu et al., "DoRA: Weight-Decomposed
Low-Rank Adaptation", ICML 2024: a trained magnitude per output row times the LoRA-updated direction.
Both, and the other tuners of the `peft` library that work on timm's Linear layers unchanged (method
`peft`), are placed by peft itself (`vitadapter.adapters.peft_injection`) and fold back into the weights
(`merge_into`), so a trained model exports as a plain timm checkpoint.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from vitadapter.adapters.base import MethodConfig, MethodHooks
from vitadapter.adapters.peft_injection import (
    TARGET_ALIASES,
    anchored_regex,
    inject_tuner,
    merge_and_unwrap,
    refuse_second_tuner,
    resolve_targets,
)
from vitadapter.adapters.registry import register_method

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone

DEFAULT_TARGETS = ("qkv", "proj", "fc1", "fc2")

# peft config fields that the method sets itself (targets come from target_modules, layers, drop_below)
RESERVED_OPTIONS = {
    "target_modules": "model.adapter.target_modules",
    "exclude_modules": "model.adapter.target_modules",
    "layers_to_transform": "model.adapter.layers and drop_below",
    "layers_pattern": "model.adapter.layers and drop_below",
    "target_parameters": "model.adapter.target_modules",
    "modules_to_save": "the neck and head, which always train",
    "peft_type": "model.adapter.peft_type (method peft) or model/adapter=lora|dora",
    "task_type": "nothing (this project needs no peft task type)",
    "inference_mode": "nothing (evaluation merges with model.adapter.merge=true)",
}

# tuners checked in tests/adapters/test_peft_tuners.py: peft wraps exactly the targets, only the tuner's
# tensors train, a checkpoint restores it, a qkv update reaches the output (BEiT), and it merges to 1e-5.
# BOFT, C3A and ROAD need block sizes that divide the layers' widths (peft says which); C3A and FOURIERFT
# start from a random update unless options.init_weights=true.
SUPPORTED_PEFT_TYPES = (
    "BOFT", "C3A", "DEFT", "DELORA", "FOURIERFT", "GLORA", "GRALORA", "HIRA", "HRA", "IA3", "LOHA",
    "LOKR", "MISS", "OFT", "OSF", "PEANUT", "PSOFT", "RANDLORA", "ROAD", "SHIRA", "SUPERTUNING", "WAVEFT",
)
_SHARED_STATE = ("it keeps state shared between layers on peft's tuner object, which "
                 "peft.inject_adapter_in_model cannot build")
_PROMPTS = "it is a prompt method for language models' token embeddings; vision prompts are model/adapter=vpt"
REFUSED_PEFT_TYPES = {
    "LORA": "use model/adapter=lora (or dora): the same targets, with r, alpha and dropout as fields",
    "ADALORA": "its rank budget needs update_and_allocate() every step and an orthogonality loss in the task loss, "
               "which the training loop does not call",
    "LN_TUNING": "it trains copies of whole layers, not an update of Linear layers; LayerNorm tuning is "
                 "model/adapter=norm",
    "LILY": "it shares its projections between layers and cannot merge",
    "POLY": "it routes by task ids passed to forward, which the encoder has none of",
    "XLORA": "it needs a transformers model with a config",
    "TRAINABLE_TOKENS": "it tunes rows of token embeddings; a ViT has none",
    "ADAMSS": "not checked here (it needs scikit-learn)",
    "BEFT": "it trains bias terms, which layers without a bias (BEiT's qkv, EVA-02's k_proj) cannot merge; "
            "BitFit is model/adapter=bitfit",
    **{name: _SHARED_STATE for name in ("VERA", "VBLORA", "FROD", "PVERA", "TINYLORA", "UNILORA")},
    **{name: _PROMPTS for name in ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING",
                                   "ADAPTION_PROMPT", "CPT", "CARTRIDGE")},
    "SHADOW": "peft.inject_adapter_in_model does not support it",
}


def _plain(value: Any) -> Any:
    """Hydra/OmegaConf containers -> plain dicts and lists (peft configs expect plain values)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_options(config_cls: type, options: Mapping[str, Any], own: Mapping[str, str] | None = None) -> None:
    """Refuses options the method sets itself or that `config_cls` (a peft config) does not have."""
    import dataclasses

    taken = {**RESERVED_OPTIONS, **(own or {})}
    for key in options:
        if key in taken:
            raise ValueError(f"model.adapter.options.{key} is set by the method; use {taken[key]} instead")
    valid = {f.name for f in dataclasses.fields(config_cls)} - set(taken)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"model.adapter.options: {unknown} are not fields of peft's {config_cls.__name__}; "
                         f"its fields: {sorted(valid)}")


@dataclass
class PeftTunerConfig(MethodConfig):
    """What the peft-based methods share: targets resolved per block, injection, merging.

    Subclasses build the peft config (`peft_config`) from their fields.
    """

    mergeable: ClassVar[bool] = True

    target_modules: Sequence[str] = field(
        default=DEFAULT_TARGETS,
        metadata={"help": "Linear layers of each adapted block by last name (qkv, proj, fc1, fc2; qkv also means "
                          "EVA-02's q/k/v_proj, fc1 its SwiGLU fc1_g/fc1_x); never patch_embed or attention pools"},
    )
    options: Mapping[str, Any] | None = field(
        default=None, metadata={"help": "further fields of the peft config (e.g. {use_rslora: true}); null: none"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        targets = _plain(self.target_modules)
        self.target_modules = (targets,) if isinstance(targets, str) else tuple(str(t) for t in targets)
        if not self.target_modules:
            raise ValueError("model.adapter.target_modules is empty; name at least one of qkv, proj, fc1, fc2")
        self.options = dict(_plain(self.options) or {})

    def peft_config(self, backbone: ViTBackbone, targets: list[str]) -> Any:
        """The peft config that wraps exactly `targets` (full names inside `backbone.vit`)."""
        raise NotImplementedError

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        if importlib.util.find_spec("peft") is None:
            raise ImportError(f"model/adapter={self.method_name} needs the peft library: pip install -e \".[peft]\"")
        refuse_second_tuner(backbone)
        targets = resolve_targets(backbone, self.block_indices(backbone), self.target_modules)
        inject_tuner(backbone, self.peft_config(backbone, targets), targets, "model.adapter.options")
        return None

    def merge_into(self, backbone: ViTBackbone) -> None:
        """Folds the tuner into the frozen weights and unwraps it: `backbone.vit` is a plain timm model again."""
        merge_and_unwrap(backbone.vit)


@register_method("lora")
@dataclass
class LoraMethodConfig(PeftTunerConfig):
    """LoRA (Hu et al. 2022) on the blocks' Linear layers; defaults r = alpha = 8 (scale 1)."""

    use_dora: ClassVar[bool] = False

    r: int = field(default=8, metadata={"help": "rank of the update B A"})
    alpha: float = field(default=8.0, metadata={"help": "the update is scaled by alpha / r (alpha / sqrt(r) with "
                                                        "options.use_rslora)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the input of the low-rank branch"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r < 1:
            raise ValueError(f"model.adapter.r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.adapter.dropout must be in [0, 1), got {self.dropout}")

    def peft_config(self, backbone: ViTBackbone, targets: list[str]) -> Any:
        from peft import LoraConfig

        own = {"r": "model.adapter.r", "lora_alpha": "model.adapter.alpha", "lora_dropout": "model.adapter.dropout",
               "use_dora": "model/adapter=dora or lora"}
        check_options(LoraConfig, self.options, own)
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, use_dora=self.use_dora,
                          target_modules=anchored_regex(targets), **self.options)


@register_method("dora")
@dataclass
class DoraMethodConfig(LoraMethodConfig):
    """DoRA (Liu et al. 2024): LoRA on the direction, a trained magnitude per output; alpha = 2 r."""

    use_dora: ClassVar[bool] = True

    alpha: float = field(default=16.0, metadata={"help": "the direction update is scaled by alpha / r"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the input of the low-rank branch"})


@register_method("peft")
@dataclass
class GenericPeftConfig(PeftTunerConfig):
    """Any peft tuner of `SUPPORTED_PEFT_TYPES` by name, its hyper-parameters in `options` (peft's names).

    IA3 scales the outputs of the targets, except those in `options.feedforward_modules` (default
    `[fc2]`, as the IA3 paper's feed-forward vector), whose inputs it scales.
    """

    peft_type: str = field(default="LOHA", metadata={"help": f"one of {', '.join(SUPPORTED_PEFT_TYPES)}"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = str(self.peft_type).upper()
        if self.peft_type in REFUSED_PEFT_TYPES:
            raise ValueError(f"model.adapter.peft_type={self.peft_type}: {REFUSED_PEFT_TYPES[self.peft_type]}. "
                             f"Tuners that work here: {', '.join(SUPPORTED_PEFT_TYPES)}")
        if self.peft_type not in SUPPORTED_PEFT_TYPES:
            raise ValueError(f"model.adapter.peft_type={self.peft_type} is not a peft tuner checked on timm ViTs; "
                             f"choose one of {', '.join(SUPPORTED_PEFT_TYPES)} (or model/adapter=lora|dora)")

    def peft_config(self, backbone: ViTBackbone, targets: list[str]) -> Any:
        import peft
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

        if self.peft_type not in peft.PeftType.__members__:
            raise ValueError(f"model.adapter.peft_type={self.peft_type}: peft {peft.__version__} has no such tuner; "
                             "upgrade peft (pip install -U peft)")
        config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[peft.PeftType[self.peft_type]]
        options = dict(self.options)
        if self.peft_type == "IA3":
            feedforward = options.pop("feedforward_modules", ["fc2"])
            feedforward = [feedforward] if isinstance(feedforward, str) else list(feedforward)
            leaves = {leaf for name in feedforward for leaf in TARGET_ALIASES.get(name, (name,))}
            options["feedforward_modules"] = anchored_regex([t for t in targets if t.rpartition(".")[2] in leaves])
        check_options(config_cls, options)
        return config_cls(target_modules=anchored_regex(targets), **options)
