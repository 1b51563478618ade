"""No checkpoint can run code: a crafted .ckpt is refused by every entry point that reads checkpoints, naming the
file, before any of its code runs; genuine checkpoints read the same through the safe reader as unrestricted."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from tests.helpers import ROOT, tiny_seg_overrides
from vitadapter import cli
from vitadapter.adapters.fusion import load_source as load_fusion_source
from vitadapter.checkpoint import TrainedCheckpoint, UnsafeCheckpointError, load_checkpoint_file
from vitadapter.export import export_merged
from vitadapter.export.onnx_export import export_onnx
from vitadapter.multitask import MultiTaskModel
from vitadapter.multitask.merging import merge_checkpoints
from vitadapter.run.checkpoint_io import AtomicCheckpointIO
from vitadapter.run.evaluate import register_restored_config
from vitadapter.run.train import run_training
from vitadapter.run.trained import load_trained
from vitadapter.run.warm_start import warm_start


class _CreatesFile:
    """Unpickled, it opens (creates) `marker` for writing: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (self.marker, "w")


def _crafted(genuine: Path, directory: Path) -> tuple[Path, Path]:
    """A copy of a genuine train.py checkpoint with a payload in its vitadapter entry; (its path, the marker)."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "payload_ran"
    checkpoint = torch.load(genuine, map_location="cpu", weights_only=True)
    checkpoint["vitadapter"]["note"] = _CreatesFile(marker)
    path = directory / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def _last(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def crafted(seg_demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _crafted(_last(seg_demo_run), tmp_path_factory.mktemp("crafted"))


@pytest.fixture(scope="module")
def trained(seg_demo_run: Path) -> L.LightningModule:
    """The genuine checkpoint's task, for the entry points that load into a built model."""
    return load_trained(_last(seg_demo_run))[1]


def _merge_script(path: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("merge_adapters", ROOT / "scripts" / "merge_adapters.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--out", str(tmp_path / "merged.ckpt"), str(path), str(path)])


def _resume(path: Path, tmp_path: Path, compose_config: Callable, seg_data_root: Path) -> None:
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root), f"ckpt_path={path}"],
                         tmp_path / "resumed")
    run_training(cfg)


# entry point -> how it reads `path`: (path, task, tmp_path, compose_config, seg_data_root)
ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "eval/predict TrainedCheckpoint.read": lambda path, *_: TrainedCheckpoint.read(path),
    "eval/predict restored config": lambda path, *_: register_restored_config([f"ckpt_path={path}"]),
    "load_trained": lambda path, *_: load_trained(path),
    "predict several: MultiTaskModel": lambda path, *_: MultiTaskModel.from_checkpoints([path]),
    "resume trainer.fit(ckpt_path)": lambda path, task, tmp, compose, root: _resume(path, tmp, compose, root),
    "checkpoint IO (fit, validate)": lambda path, *_: AtomicCheckpointIO().load_checkpoint(path),
    "init_from warm_start": lambda path, task, *_: warm_start(task, path),
    "fusion source": lambda path, task, *_: load_fusion_source(str(path), task.backbone),
    "merge_checkpoints": lambda path, *_: merge_checkpoints([path, path]),
    "export_merged": lambda path, task, tmp, *_: export_merged(path, tmp / "vit.safetensors"),
    "export_onnx": lambda path, task, tmp, *_: export_onnx(path, tmp / "model.onnx"),
}


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
def test_every_entry_point_refuses_a_crafted_checkpoint_before_its_code_runs(
        entry_point: str, crafted: tuple[Path, Path], trained: L.LightningModule, tmp_path: Path, compose_config,
        seg_data_root: Path) -> None:
    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError) as refused:
        ENTRY_POINTS[entry_point](path, trained, tmp_path, compose_config, seg_data_root)
    assert refused.value.path == str(path)
    assert refused.value.refused == "io.open"
    assert str(refused.value).startswith(f"{path} was not loaded because unpickling it could run code: "
                                         "torch.load(weights_only=True) refused the global io.open.")
    assert not marker.exists()
    if entry_point.startswith("resume"):  # refused where Lightning restores, not before the fit
        assert "resume_start" in [entry.name for entry in refused.traceback]


def test_merge_script_reports_the_refusal(crafted: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = crafted
    with pytest.raises(SystemExit, match=rf"merge_adapters.py: error: {path} was not loaded because unpickling"):
        _merge_script(path, tmp_path)
    assert not marker.exists()
    assert not (tmp_path / "merged.ckpt").exists()


def test_eval_cli_refuses_a_crafted_checkpoint(crafted: tuple[Path, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """eval.py's own function (vitadapter.cli.evaluate) with its command line, in this process: refused before
    Hydra composes anything."""
    path, marker = crafted
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["eval.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path}"])
    with pytest.raises(UnsafeCheckpointError, match=rf"^{re.escape(str(path))} was not loaded because unpickling it "
                                                    "could run code"):
        cli.evaluate()
    assert not marker.exists()
    assert not (tmp_path / ".hydra").exists()


def test_the_crafted_payload_does_run_when_unpickled_without_restriction(seg_demo_run: Path, tmp_path: Path) -> None:
    """The refusals above matter: the same file read with weights_only=False creates the marker."""
    path, marker = _crafted(_last(seg_demo_run), tmp_path)
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.is_file()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return type(b) is type(a) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(b) is type(a) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_genuine_checkpoints_read_the_same_as_unrestricted(seg_demo_run: Path, det_demo_run: Path) -> None:
    """Every file train.py wrote (last and best, segmentation in bf16 and detection) needs no extra global."""
    files = sorted((*seg_demo_run.glob("checkpoints/*.ckpt"), *det_demo_run.glob("checkpoints/*.ckpt")))
    assert [f.name for f in files] == ["best_step2.ckpt", "last.ckpt"] * 2
    for file in files:
        unrestricted = torch.load(file, map_location="cpu", weights_only=False)
        assert _same(load_checkpoint_file(file), unrestricted)
        assert _same(AtomicCheckpointIO().load_checkpoint(file), unrestricted)


def test_other_refusals_and_non_checkpoints_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x80\x02garbage")
    with pytest.raises(UnsafeCheckpointError) as refused:
        load_checkpoint_file(garbage)
    assert refused.value.refused is None
    assert str(refused.value).startswith(f"{garbage} was not loaded because unpickling it could run code: "
                                         "torch.load(weights_only=True) refused its content (Unsupported operand 103)")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(ValueError, match=rf"^{tensor} holds a Tensor, not a checkpoint \(a dict\)"):
        load_checkpoint_file(tensor)
    with pytest.raises(FileNotFoundError, match=rf"checkpoint {tmp_path / 'missing.ckpt'} does not exist"):
        load_checkpoint_file(tmp_path / "missing.ckpt")
