"""scripts/estimate_memory.py (train.py's overrides in, the predicted peak out) and the measurement of
scripts/benchmark_memory.py (a child's peak resident set)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_script, tiny_seg_overrides
from vitadapter.cost.memory_estimate import CPU_BASELINE_BYTES, MemoryEstimate


def test_estimate_memory_takes_train_py_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_script("scripts/estimate_memory.py", "experiment=demo_seg", *tiny_seg_overrides(tmp_path), "--json")
    parts = json.loads(capsys.readouterr().out)
    assert parts["total"] == sum(parts[part] for part in MemoryEstimate.PARTS)
    assert parts["baseline"] == CPU_BASELINE_BYTES and parts["crop"] == [64, 64] and parts["batch_size"] == 2
    assert parts["optimizer_state"] > 2 * parts["trained_weights"] > 0


def test_benchmark_memory_measures_a_child_s_peak(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("benchmark_memory", ROOT / "scripts" / "benchmark_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status, peak, _ = module.peak_rss([sys.executable, "-c", "b = b'x' * 300_000_000"], tmp_path / "log")
    assert status == 0 and 300_000_000 < peak < 400_000_000
