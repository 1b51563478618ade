"""What every PEFT method shares: a typed config that places the method on a frozen ViT.

A method *applies itself* to the `ViTBackbone` (as peft's tuners do to a model): it wraps
sublayers, wraps Linear layers, unfreezes tensors, or returns `MethodHooks` that act on the tokens
between blocks (prompts). Whatever it adds or unfreezes trains; the encoder and the checkpoints learn
which tensors those are from `requires_grad`, so no method keeps a list of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone
    from vitadapter.backbone.families import Tokens

log = logging.getLogger(__name__)


class MethodHooks(nn.Module):
    """Trainable state a method keeps outside the ViT's blocks, run by the encoder between blocks."""

    def on_embed(self, tokens: Tokens) -> Tokens:
        """Called once after the patch and position embedding."""
        return tokens

    def before_block(self, index: int, tokens: Tokens) -> Tokens:
        """Called before block `index`."""
        return tokens

    def no_weight_decay(self) -> set[str]:
        """The tensors that get no weight decay (timm's convention): all of them, as hooks hold tokens (prompts)."""
        return {name for name, _ in self.named_parameters()}


@dataclass
class MethodConfig:
    """Base of every PEFT method's config; subclasses add hyper-parameters and implement `apply`.

    Class attributes:
        method_name: the registered name (set by `register_method`).
        per_block: the method places modules in individual blocks (`layers` and `drop_below` apply).
        mergeable: the method can be folded into the frozen weights (`merge_into`).
    """

    method_name: ClassVar[str] = ""
    per_block: ClassVar[bool] = True
    mergeable: ClassVar[bool] = False

    lr: float | None = field(
        default=None,
        metadata={"help": "learning rate of this method's tensors; null: the optimiser's (model.optimizer.lr)"},
    )
    layers: Sequence[int] | None = field(
        default=None, metadata={"help": "0-based blocks to adapt (negative from the end); null = every block"}
    )
    drop_below: int = field(
        default=0,
        metadata={"help": "AdapterDrop (Rücklé et al. 2021): no modules in blocks < K, which then run graph-free"},
    )
    merge: bool = field(
        default=False, metadata={"help": "fold the method into the frozen weights before evaluating (eval.py)"}
    )

    def __post_init__(self) -> None:
        self.layers = None if self.layers is None else tuple(int(i) for i in self.layers)
        if self.drop_below < 0:
            raise ValueError(f"model.adapter.drop_below must be >= 0, got {self.drop_below}")
        if self.merge and not self.mergeable:
            raise ValueError(
                f"model.adapter.merge=true: method {self.method_name!r} cannot be merged into the frozen weights; "
                "only linear methods (lora, dora, ssf, and peft tuners that support merging) can"
            )
        if not self.per_block and (self.layers is not None or self.drop_below):
            raise ValueError(
                f"method {self.method_name!r} has no per-block modules: model.adapter.layers and drop_below do not apply"
            )

    def block_indices(self, backbone: ViTBackbone) -> list[int]:
        """The blocks this method adapts: `layers` (all by default) that run, minus those below `drop_below`.

        Blocks after the last tapped one never run, so nothing is placed there (it would count as
        trainable and never receive a gradient).
        """
        depth = backbone.depth
        layers = range(depth) if self.layers is None else self.layers
        if any(not -depth <= i < depth for i in layers):
            raise ValueError(f"model.adapter.layers={list(layers)} outside the {depth} blocks of the backbone")
        chosen = sorted({i % depth for i in layers})
        unused = [i for i in chosen if i >= backbone.used_depth]
        if unused:
            log.info("blocks %s come after the last tapped block %d and never run: no %s modules there",
                     unused, backbone.used_depth - 1, self.method_name)
        return [i for i in chosen if self.drop_below <= i < backbone.used_depth]

    def apply(self, backbone: ViTBackbone) -> MethodHooks | None:
        """Places the method on the frozen ViT.

        Args:
            backbone: the frozen ViT (every tensor frozen, no method applied yet).

        Returns:
            Hooks the encoder runs between blocks (and trains), or None.
        """
        raise NotImplementedError

    def merge_into(self, backbone: ViTBackbone) -> None:
        """Folds the trained method into the ViT's weights so that it is a plain timm model again."""
        raise NotImplementedError(f"method {self.method_name!r} cannot merge")

    def checkpoint_record(self) -> dict[str, Any]:
        """What checkpoints must record beyond tensors and config to rebuild the method identically.

        AdapterFusion records its source checkpoints' content hashes here; most methods record nothing.
        """
        return {}

    def check_checkpoint_record(self, record: dict[str, Any]) -> None:
        """Refuses a checkpoint whose `checkpoint_record()` does not match this build (before its tensors load)."""


class LoadedFrozenModules(nn.ModuleList):
    """Frozen modules a method loaded from other checkpoints when it was applied (AdapterFusion's sources).

    Like the frozen ViT, checkpoints leave their tensors out (the method loads them again when the
    model is rebuilt and verifies them with `MethodConfig.check_checkpoint_record`); they never
    train and stay in eval mode.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__(modules)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LoadedFrozenModules:
        return super().train(False)


class SpatialAdapter(nn.Module):
    """An adapter that needs the patch grid; the encoder sets `grid` before every forward."""

    def __init__(self, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.grid: tuple[int, int] | None = None

    def grid_for(self, num_patches: int) -> tuple[int, int]:
        """The (h, w) patch grid of the current input, checked against the token count."""
        if self.grid is None or self.grid[0] * self.grid[1] != num_patches:
            raise RuntimeError(f"spatial adapter got {num_patches} patch tokens but grid {self.grid}; "
                               "call it through the Encoder, which sets the grid")
        return self.grid
