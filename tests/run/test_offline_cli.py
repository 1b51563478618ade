"""No network: a missing dataset is reported before the backbone is built (in process), and pretrained weights
that cannot be had fail within seconds through the real entry point, saying what to do."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from tests.helpers import run_cli, tiny_seg_overrides, train_in_process
from vitadapter.data.coco_datamodule import COCODataModule

AUGREG = "vit_base_patch16_224.augreg_in21k"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty Hugging Face cache and a hub endpoint that refuses connections (as on a cluster node)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def test_missing_dataset_is_reported_before_the_backbone_is_built(tmp_path: Path, offline: None,
                                                                   caplog: pytest.LogCaptureFixture,
                                                                   capfd: pytest.CaptureFixture) -> None:
    missing = tmp_path / "ADEChallengeData2016"
    # in process: a backbone built first would fail to download (PretrainedWeightsUnavailable), not this
    with caplog.at_level(logging.INFO), pytest.raises(FileNotFoundError) as raised:
        train_in_process(tmp_path / "run", "experiment=ade20k_seg", f"data.root={missing}",
                         "model.backbone.pretrained=true", "trainer=cpu")
    message = str(raised.value)
    assert message.startswith("ADE20K") and f"{missing}" in message and "Expected layout" in message
    assert "download_ade20k.sh" in message  # where to get it
    log = message + caplog.text + "".join(capfd.readouterr())
    for later in ("PretrainedWeightsUnavailable", "Loading pretrained", "huggingface", "Retrying", "RANDOM weights"):
        assert later not in log


def test_missing_coco_files_are_named_by_check_data(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text("{}")
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=f"COCO image folder not found: {tmp_path / 'train2017'}"):
        COCODataModule(str(tmp_path)).check_data()
    COCODataModule(str(tmp_path / "nothing_yet"), synthetic={"num_train": 2}).check_data()  # written later


def test_unavailable_weights_fail_within_seconds_saying_what_to_do(tmp_path: Path, seg_data_root: Path,
                                                                   offline: None) -> None:
    proc = run_cli("train.py", "experiment=demo_seg", *tiny_seg_overrides(seg_data_root),
                   f"model.backbone.name={AUGREG}", "model.backbone.pretrained=true",
                   f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode != 0
    log = proc.stderr
    assert f"PretrainedWeightsUnavailable: Cannot load the pretrained weights of timm model {AUGREG!r}: " \
           f"Hugging Face hub timm/{AUGREG}, file model.safetensors or pytorch_model.bin." in log
    assert "model.backbone.checkpoint=/path/to/file" in log
    assert f"python scripts/fetch_weights.py model.backbone.name={AUGREG}" in log
    assert f"hf download timm/{AUGREG} model.safetensors" in log
    assert "Retrying" not in log
