"""The full CPU demos reach their promised quality (slow: minutes; run with `pytest -m slow`)."""

import json
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli


def _run_demo(tmp_path: Path, *args: str, timeout: int) -> tuple[dict, float]:
    """Runs train.py from an empty data folder; returns metrics.json and the wall time in seconds."""
    start = time.monotonic()
    run_cli("train.py", *args, f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}",
            timeout=timeout)
    elapsed = time.monotonic() - start
    return json.loads((tmp_path / "run" / "metrics.json").read_text()), elapsed


@pytest.mark.slow
def test_demo_seg_reaches_50_miou_within_10_minutes(tmp_path: Path) -> None:
    metrics, elapsed = _run_demo(tmp_path, timeout=900)
    assert metrics["val/mIoU"] >= 50.0
    assert elapsed < 600


@pytest.mark.slow
def test_demo_seg_vit_adapter_beats_demo_seg_within_10_minutes(tmp_path: Path) -> None:
    metrics, elapsed = _run_demo(tmp_path, "experiment=demo_seg_vit_adapter", timeout=900)
    assert metrics["val/mIoU"] >= 60.0  # demo_seg: 53.0 (deterministic on a given code version)
    assert elapsed < 600


@pytest.mark.slow
def test_demo_det_reaches_20_bbox_ap_within_15_minutes(tmp_path: Path) -> None:
    metrics, elapsed = _run_demo(tmp_path, "experiment=demo_det", timeout=1200)
    assert metrics["val/bbox_AP"] >= 20.0
    assert elapsed < 900
