"""The full CPU demo reaches its promised quality (slow: minutes; run with `pytest -m slow`)."""

import json
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.mark.slow
def test_demo_seg_reaches_50_miou_within_10_minutes(tmp_path: Path) -> None:
    start = time.monotonic()
    run_cli("train.py", f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}", timeout=900)
    elapsed = time.monotonic() - start
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/mIoU"] >= 50.0
    assert elapsed < 600


@pytest.mark.slow
def test_demo_det_reaches_20_bbox_ap_within_15_minutes(tmp_path: Path) -> None:
    start = time.monotonic()
    run_cli("train.py", "experiment=demo_det", f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}", timeout=1200)
    elapsed = time.monotonic() - start
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/bbox_AP"] >= 20.0
    assert elapsed < 900
