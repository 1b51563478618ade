"""Tests for scripts/make_synthetic_ade20k.py and scripts/download_ade20k.sh (no network)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_synthetic_ade20k", SCRIPTS / "make_synthetic_ade20k.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_synthetic_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = _load_cli()
    args = [str(tmp_path / "s"), "--num-train", "3", "--num-val", "1", "--image-size", "32"]
    assert cli.main(args) == 0
    assert len(list((tmp_path / "s" / "images" / "training").glob("ADE_train_*.jpg"))) == 3
    assert cli.main(args) == 0 and "already holds" in capsys.readouterr().out
    (tmp_path / "real" / "images").mkdir(parents=True)
    assert cli.main([str(tmp_path / "real")]) == 1
    assert "real dataset" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_download_script_usage_and_existing_data(tmp_path: Path) -> None:
    script = str(SCRIPTS / "download_ade20k.sh")
    usage = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in usage.stdout and "data/" in usage.stdout
    assert subprocess.run(["bash", script, "a", "b"], capture_output=True).returncode == 2
    for sub in ("images/training", "annotations/validation"):
        (tmp_path / "ADEChallengeData2016" / sub).mkdir(parents=True)
    done = subprocess.run(["bash", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert "nothing to do" in done.stdout
