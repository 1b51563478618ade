"""The full CPU demos reach their promised quality (slow: minutes; run with `pytest -m slow`).

Their wall times are measured, not asserted: the README quotes `time python train.py experiment=...`.
"""

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli


def _run_demo(directory: Path, *args: str, timeout: int) -> dict:
    """Runs train.py from an empty data folder; returns its metrics.json."""
    run_cli("train.py", *args, f"paths.data_dir={directory / 'data'}", f"hydra.run.dir={directory / 'run'}",
            timeout=timeout)
    return json.loads((directory / "run" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def demo_seg_metrics(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """metrics.json of the demo as shipped (`python train.py`)."""
    return _run_demo(tmp_path_factory.mktemp("demo_seg"), timeout=1800)


@pytest.mark.slow
def test_demo_seg_reaches_50_miou(demo_seg_metrics: dict) -> None:
    assert demo_seg_metrics["val/mIoU"] >= 50.0


@pytest.mark.slow
def test_demo_seg_vit_adapter_beats_demo_seg(demo_seg_metrics: dict, tmp_path: Path) -> None:
    metrics = _run_demo(tmp_path, "experiment=demo_seg_vit_adapter", timeout=1800)
    assert metrics["val/mIoU"] > demo_seg_metrics["val/mIoU"] + 5.0  # the spatial prior is worth points, not noise


@pytest.mark.slow
def test_demo_det_reaches_20_bbox_ap(tmp_path: Path) -> None:
    metrics = _run_demo(tmp_path, "experiment=demo_det", timeout=2400)
    assert metrics["val/bbox_AP"] >= 20.0
