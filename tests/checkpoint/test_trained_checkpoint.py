"""TrainedCheckpoint on real train.py checkpoints (segmentation and detection): the file is read once, the parts
partition the trained tensors as the task's modules hold them, and the config, class names, palette, fingerprint
and device are what the run wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from vitadapter.checkpoint import FORMAT_VERSION, PARTS, TrainedCheckpoint, load_checkpoint_file
from vitadapter.data.synthetic import SHAPE_CLASSES
from vitadapter.run.trained import load_trained

# run fixture -> (experiment, trainer precision, tensors per part)
RUNS = {
    # Convpass on 4 blocks x 2 branches x (down, conv, up) x (weight, bias) = 48 in both
    "seg_demo_run": ("demo_seg", "bf16-mixed", {"adapter": 48, "neck": 50, "head": 52}),
    "det_demo_run": ("demo_det", "32-true", {"adapter": 48, "neck": 26, "head": 42}),
}


def _last(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("run", list(RUNS))
def test_the_parts_partition_the_trained_tensors_as_the_task_holds_them(run: str,
                                                                        request: pytest.FixtureRequest) -> None:
    checkpoint = TrainedCheckpoint.read(_last(request.getfixturevalue(run)))
    parts = {part: set(checkpoint.state(part)) for part in PARTS}
    saved = set(checkpoint.state_dict)
    assert set().union(*parts.values()) == saved and sum(map(len, parts.values())) == len(saved)
    assert {part: len(keys) for part, keys in parts.items()} == RUNS[run][2]

    _, task = load_trained(checkpoint)
    key_of = {id(tensor): key for key, tensor in task.state_dict(keep_vars=True).items()}
    encoder = task.encoder
    in_encoder = {id(t) for t in (*encoder.parameters(), *encoder.buffers())}
    assert parts["adapter"] == {key_of[id(p)] for p in encoder.method_parameters()}
    assert parts["neck"] == {key_of[id(t)] for t in (*encoder.neck.parameters(), *encoder.neck.buffers())}
    assert parts["head"] == {key for key, tensor in task.state_dict(keep_vars=True).items()
                             if id(tensor) not in in_encoder}
    assert checkpoint.state() == checkpoint.state_dict


def test_one_read_answers_everything(seg_demo_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    load = torch.load

    def counted(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        reads.append(str(file))
        return load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    path = _last(seg_demo_run)
    checkpoint = TrainedCheckpoint.read(path)
    saved = set(checkpoint.state_dict)
    for answer in ("run_config", "task_name", "class_names", "palette", "trained_on", "method_record",
                   "format_version", "backbone_name", "backbone_fingerprint"):
        getattr(checkpoint, answer)
    checkpoint.config(["data.batch_size=1"])
    checkpoint.tensors("adapter")
    checkpoint.state("neck", "head")
    _, task = load_trained(checkpoint)
    checkpoint.check_trained_on(task.backbone)
    assert reads == [str(path)]
    assert set(checkpoint.state_dict) == saved  # loading filled the task's frozen tensors, not the checkpoint


@pytest.mark.parametrize("run", list(RUNS))
def test_config_names_fingerprint_and_device_are_what_the_run_wrote(run: str, request: pytest.FixtureRequest) -> None:
    run_dir = request.getfixturevalue(run)
    experiment, precision, _ = RUNS[run]
    checkpoint = TrainedCheckpoint.read(_last(run_dir))
    written = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    expected = {key: OmegaConf.to_container(written[key], resolve=True) for key in ("model", "data", "monitor")}
    expected["model"]["task_name"] = experiment  # an unset model.task_name becomes the experiment's name
    assert {key: checkpoint.run_config[key] for key in expected} == expected
    assert checkpoint.run_config["trainer"] == {"precision": precision}
    assert (checkpoint.task_name, checkpoint.trained_on, checkpoint.format_version) == (experiment, "cpu",
                                                                                         FORMAT_VERSION)
    assert (checkpoint.method_name, checkpoint.method_record) == ("convpass", {})
    datamodule, task = load_trained(checkpoint)
    assert checkpoint.class_names == task.class_names == datamodule.class_names == list(SHAPE_CLASSES)
    assert checkpoint.palette is None and getattr(datamodule, "palette", None) is None
    assert (checkpoint.backbone_name, checkpoint.backbone_fingerprint) == ("test_vit", task.backbone.fingerprint)
    assert len(checkpoint.backbone_fingerprint) == 64


def test_a_recorded_palette_rebuilds_the_datamodules_colours(seg_demo_run: Path, tmp_path: Path) -> None:
    contents = load_checkpoint_file(_last(seg_demo_run))
    colours = [[10 * i, 255 - 10 * i, 7] for i in range(len(SHAPE_CLASSES))]
    contents["vitadapter"]["config"]["data"]["palette"] = colours  # as train.py records a classes.txt's colours
    torch.save(contents, tmp_path / "palette.ckpt")
    checkpoint = TrainedCheckpoint.read(tmp_path / "palette.ckpt")
    datamodule, _ = load_trained(checkpoint)
    assert checkpoint.palette == datamodule.palette == [tuple(colour) for colour in colours]


def test_files_that_are_not_train_py_checkpoints_are_refused_naming_them(seg_demo_run: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"init_from.ckpt_path='x.ckpt' does not exist \(relative paths are "
                                                r"from .*\); give a checkpoint written by train.py"):
        TrainedCheckpoint.read("x.ckpt", "init_from.ckpt_path='x.ckpt'")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'plain.ckpt'} was not written by vitadapter \(it has no "
                                         r"'vitadapter' entry or no state_dict\)"):
        TrainedCheckpoint.read(tmp_path / "plain.ckpt")
    contents = load_checkpoint_file(_last(seg_demo_run))
    contents["vitadapter"]["config"] = None  # a model built in Python records no run config
    torch.save(contents, tmp_path / "python.ckpt")
    checkpoint = TrainedCheckpoint.read(tmp_path / "python.ckpt", error=RuntimeError)
    assert not checkpoint.has_run_config and checkpoint.trained_on is None and checkpoint.palette is None
    with pytest.raises(RuntimeError, match="holds no run config, so the model cannot be rebuilt from it"):
        checkpoint.config()
    with pytest.raises(ValueError, match=r"parts=\['adapters'\]: choose from \['adapter', 'neck', 'head'\]"):
        checkpoint.state("adapters")
