"""Hydra callback that tabulates a multirun: one row per job, swept values and final metrics."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

METRIC_PREFIXES = ("params/trainable", "params/total")


def _parse_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def collect_sweep_rows(sweep_dir: str | Path, metric_keys: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Reads every job folder of a sweep.

    Args:
        sweep_dir: the multirun folder (one sub-folder per job with `.hydra/overrides.yaml`).
        metric_keys: the metrics to report besides the parameter counts.

    Returns:
        (swept keys, rows): the override keys whose values differ between jobs (all of them for a
        single job), and one row per job with those values and the metrics (None if missing).
    """
    jobs = []
    for overrides_file in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml"), key=lambda p: _job_order(p)):
        job_dir = overrides_file.parent.parent
        overrides = dict(_parse_override(o) for o in yaml.safe_load(overrides_file.read_text()) or [])
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        jobs.append((job_dir.name, overrides, metrics))
    keys = list(dict.fromkeys(k for _, overrides, _ in jobs for k in overrides))
    if len(jobs) > 1:
        keys = [k for k in keys if len({overrides.get(k) for _, overrides, _ in jobs}) > 1]
    rows = []
    for name, overrides, metrics in jobs:
        row: dict[str, Any] = {"job": name, **{k: overrides.get(k) for k in keys}}
        row.update({m: metrics.get(m) for m in (*METRIC_PREFIXES, *metric_keys)})
        rows.append(row)
    return keys, rows


def _job_order(overrides_file: Path) -> tuple[int, str]:
    name = overrides_file.parent.parent.name
    return (int(name), name) if name.isdigit() else (1 << 30, name)


def write_sweep_summary(sweep_dir: str | Path, metric_keys: list[str]) -> Path:
    """Writes `sweep_summary.csv` and `sweep_summary.md` into the sweep folder and returns the CSV path."""
    sweep_dir = Path(sweep_dir)
    _, rows = collect_sweep_rows(sweep_dir, metric_keys)
    columns = list(rows[0]) if rows else ["job", *METRIC_PREFIXES, *metric_keys]
    csv_path = sweep_dir / "sweep_summary.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    (sweep_dir / "sweep_summary.md").write_text("\n".join(lines) + "\n")
    return csv_path


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


class SweepSummary(Callback):
    """Writes the sweep summary when a multirun ends (configured in configs/hydra/default.yaml)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        monitor = config.get("monitor") or {}
        metrics = list(dict.fromkeys([m for m in [monitor.get("metric"), *monitor.get("report", [])] if m]))
        path = write_sweep_summary(config.hydra.sweep.dir, metrics)
        log.info("sweep summary: %s", path)
