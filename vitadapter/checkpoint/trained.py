"""A trained checkpoint, read once, and everything the rest of vitadapter asks of it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from vitadapter.backbone.fingerprint import BackboneMismatchError, check_trained_on
from vitadapter.checkpoint.format import META_KEY
from vitadapter.checkpoint.keys import StateKey, check_parts, classify_key
from vitadapter.checkpoint.safe_load import load_checkpoint_file

if TYPE_CHECKING:
    from vitadapter.backbone import ViTBackbone

EXAMPLE_PATH = "outputs/train/runs/<date>/checkpoints/last.ckpt"


class TrainedCheckpoint:
    """A checkpoint written by train.py: its run config, the frozen ViT it needs, its trained tensors by part.

        checkpoint = TrainedCheckpoint.read("outputs/train/runs/<date>/checkpoints/last.ckpt")
        checkpoint.task_name, checkpoint.class_names, checkpoint.trained_on
        checkpoint.state("adapter")          # the PEFT method's trained tensors by state-dict key
        checkpoint.load_into(task)           # a task built from checkpoint.config()

    Args:
        contents: the checkpoint's dict, as `load_checkpoint_file` returns it or as Lightning hands it to a hook.
        subject: how messages name it, e.g. "fusion source A.ckpt" (`read`: the path).
        path: the file it was read from; None for a dict from elsewhere.
        error: the exception raised when it lacks what vitadapter writes (the `vitadapter` entry, the run config).
    """

    def __init__(self, contents: dict[str, Any], subject: str = "the checkpoint", path: Path | None = None,
                 error: type[Exception] = ValueError) -> None:
        self.subject, self.path, self.error = subject, path, error
        meta = contents.get(META_KEY)
        if not isinstance(meta, dict) or not isinstance(contents.get("state_dict"), dict):
            raise error(f"{subject} was not written by vitadapter (it has no {META_KEY!r} entry or no state_dict); "
                        f"give a checkpoint written by train.py, e.g. {EXAMPLE_PATH}")
        self.contents = contents
        self.meta: dict[str, Any] = meta

    @classmethod
    def read(cls, path: str | Path, subject: str | None = None, error: type[Exception] = ValueError) -> TrainedCheckpoint:
        """Reads a checkpoint file once, safely (`load_checkpoint_file`: tensors and plain values only, older
        formats upgraded).

        Args:
            path: the checkpoint file.
            subject: how messages name it (default: the path), e.g. "init_from.ckpt_path='A.ckpt'".
            error: see the class.

        Raises:
            FileNotFoundError: no such file.
            UnsafeCheckpointError: unpickling it could run code; nothing of it ran.
        """
        path = Path(path)
        subject = subject or str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{subject} does not exist (relative paths are from {Path.cwd()}); give a "
                                    f"checkpoint written by train.py, e.g. {EXAMPLE_PATH}")
        return cls(load_checkpoint_file(path), subject, path, error)

    # -- what it was trained as

    @property
    def format_version(self) -> int:
        """The layout of the `vitadapter` entry (read files are upgraded to the current one)."""
        return int(self.meta.get("format_version", 1))

    @property
    def has_run_config(self) -> bool:
        """Whether it records the run config (train.py's checkpoints do; a model built in Python writes none)."""
        return bool(self.meta.get("config"))

    @property
    def run_config(self) -> dict[str, Any]:
        """The resolved run config that rebuilds the model: {"model", "data", "monitor", "trainer", "trained_on"}."""
        if not self.has_run_config:
            raise self.error(f"{self.subject} holds no run config, so the model cannot be rebuilt from it (it was "
                             "built in Python, not by train.py); build the model yourself and use load_into")
        return self.meta["config"]

    def config(self, overrides: Sequence[str] = ()) -> DictConfig:
        """The run config as an OmegaConf tree (a copy), with dotted `key=value` overrides merged in."""
        config = OmegaConf.create(self.run_config)
        return OmegaConf.merge(config, OmegaConf.from_dotlist(list(overrides))) if overrides else config

    @property
    def task_name(self) -> str | None:
        """`model.task_name`: the task's name among several (the experiment's name by default)."""
        return self.run_config["model"].get("task_name")

    @property
    def adapter_config(self) -> dict[str, Any]:
        """`model.adapter` of the run config; `{"name": "none"}` without a method."""
        return self.run_config["model"].get("adapter") or {"name": "none"}

    @property
    def method_name(self) -> str:
        """`model.adapter.name`, e.g. "lora"; "none" without a method."""
        return str(self.adapter_config["name"])

    @property
    def method_record(self) -> dict[str, Any]:
        """What the method recorded about itself (`MethodConfig.checkpoint_record`, e.g. fusion sources)."""
        return self.meta.get("method_record") or {}

    @property
    def class_names(self) -> list[str] | None:
        """The task's class names in label order (None if neither recorded nor in the data config)."""
        names = self.meta.get("class_names")
        if names is None:
            names = ((self.meta.get("config") or {}).get("data") or {}).get("class_names")
        return None if names is None else [str(name) for name in names]

    @property
    def palette(self) -> list[tuple[int, int, int]] | None:
        """The dataset's class colours (`data.palette`, or the classes.txt colours train.py recorded); None: none."""
        palette = ((self.meta.get("config") or {}).get("data") or {}).get("palette")
        return None if palette is None else [(int(r), int(g), int(b)) for r, g, b in palette]

    @property
    def trained_on(self) -> str | None:
        """The device type it trained on ("cuda", "cpu", ...); None when not recorded."""
        return (self.meta.get("config") or {}).get("trained_on")

    # -- the frozen ViT it needs

    @property
    def backbone_name(self) -> str | None:
        """The frozen ViT's timm name."""
        return self.meta.get("backbone_name")

    @property
    def backbone_fingerprint(self) -> str | None:
        """The hash of the frozen ViT's tensors it was trained on (`ViTBackbone.fingerprint`)."""
        return self.meta.get("backbone_fingerprint")

    def check_trained_on(self, backbone: ViTBackbone, target: str = "this model's backbone",
                         error: type[Exception] = BackboneMismatchError) -> None:
        """Refuses a `backbone` whose frozen weights are not those it was trained on, naming both."""
        check_trained_on(self.subject, self.backbone_name, self.backbone_fingerprint, target, backbone.name,
                         backbone.fingerprint, error=error)

    # -- its trained tensors

    @property
    def state_dict(self) -> dict[str, Tensor]:
        """The trained tensors (the frozen ViT's are not in it)."""
        return self.contents["state_dict"]

    @cached_property
    def keys(self) -> list[StateKey]:
        """Every state-dict key, placed (`classify_key`)."""
        return [classify_key(key) for key in self.state_dict]

    def tensors(self, *parts: str) -> dict[StateKey, Tensor]:
        """The tensors of `parts` ("adapter", "neck", "head"; all without any) by placed key."""
        check_parts(parts)
        return {key: self.state_dict[key.key] for key in self.keys if not parts or key.part in parts}

    def state(self, *parts: str) -> dict[str, Tensor]:
        """The tensors of `parts` ("adapter", "neck", "head"; all without any) by state-dict key."""
        return {key.key: tensor for key, tensor in self.tensors(*parts).items()}

    def load_into(self, task: nn.Module) -> None:
        """Loads the trained tensors into `task`, a task built from `config()`: the frozen ViT is verified, not
        loaded (the task's `on_load_checkpoint` fills it in), and every other key must match (strict)."""
        backbone = getattr(task, "backbone", None)
        if backbone is not None:
            self.check_trained_on(backbone)
        contents = {**self.contents, "state_dict": dict(self.state_dict)}  # the hook adds the frozen tensors
        task.on_load_checkpoint(contents)
        task.load_state_dict(contents["state_dict"])
