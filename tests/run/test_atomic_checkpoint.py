"""Checkpoints are written beside their target and renamed: a save that fails or is killed tears nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers import ROOT
from vitadapter.run.build import build_trainer
from vitadapter.run.checkpoint_io import AtomicCheckpointIO

LIMIT = 2**20  # bytes a save in the child may write into one file: a quarter of its 4 MiB checkpoint

# Saves a 4 MiB checkpoint under RLIMIT_FSIZE: the kernel stops the write after LIMIT bytes, deterministically,
# either by killing the process (SIGXFSZ, like a kill during a save) or, with SIGXFSZ ignored, with EFBIG.
_CHILD = textwrap.dedent("""
    import resource, signal, sys
    import torch
    from vitadapter.run.checkpoint_io import AtomicCheckpointIO
    limit, target, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    checkpoint = {"state_dict": {"w": torch.arange(2**20, dtype=torch.float32)}, "global_step": 2}
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if mode != "error":  # Python ignores SIGXFSZ by default
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if mode == "plain":
        torch.save(checkpoint, target)
    else:
        AtomicCheckpointIO().save_checkpoint(checkpoint, target)
""")


def _save_in_child(target: Path, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", _CHILD, str(LIMIT), str(target), mode], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def previous(tmp_path: Path) -> tuple[Path, bytes]:
    """A saved `last.ckpt` (step 1) and its bytes."""
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(8)}, "global_step": 1}, target)
    return target, target.read_bytes()


def test_overwrites_in_place_and_leaves_only_the_target(previous: tuple[Path, bytes]) -> None:
    target, _ = previous
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(8)}, "global_step": 2}, target)
    assert os.listdir(target.parent) == ["last.ckpt"]
    loaded = torch.load(target, weights_only=True)
    assert loaded["global_step"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.ones(8))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as an ordinary open() creates it


def test_killed_during_the_write_leaves_the_previous_checkpoint(previous: tuple[Path, bytes]) -> None:
    target, before = previous
    proc = _save_in_child(target, "kill")
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr
    assert target.read_bytes() == before
    # what a killed save leaves: its partial temporary file, hidden, beside the target, never *.ckpt
    [temp] = [p for p in target.parent.iterdir() if p != target]
    assert temp.name.startswith(".last.ckpt.") and temp.suffix == ".tmp" and temp.stat().st_size == LIMIT
    assert list(target.parent.glob("*.ckpt")) == [target]


def test_failed_write_leaves_the_previous_checkpoint_and_no_temporary_file(previous: tuple[Path, bytes]) -> None:
    target, before = previous
    proc = _save_in_child(target, "error")
    assert proc.returncode == 1 and "File too large" in proc.stderr, proc.stderr  # EFBIG reached the caller
    assert target.read_bytes() == before
    assert os.listdir(target.parent) == ["last.ckpt"]


def test_the_same_kill_tears_a_plain_torch_save(previous: tuple[Path, bytes]) -> None:
    """The control: without the temporary file the killed save truncates the checkpoint."""
    target, _ = previous
    assert _save_in_child(target, "plain").returncode == -signal.SIGXFSZ
    assert target.stat().st_size == LIMIT
    with pytest.raises(RuntimeError):
        torch.load(target, weights_only=True)


@pytest.mark.parametrize("trainer", ["cpu", "ddp_sim"])
def test_the_trainer_saves_through_the_plugin(trainer: str, compose_config: Callable[..., DictConfig],
                                              tmp_path: Path) -> None:
    cfg = compose_config("train", [f"trainer={trainer}", "logger=[]"], tmp_path)
    assert isinstance(build_trainer(cfg).strategy.checkpoint_io, AtomicCheckpointIO)
