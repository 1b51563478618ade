"""Hydra callback that tabulates a multirun: one row per job, swept values, final metrics and cost.

Writes `sweep_summary.csv`, `sweep_summary.md` and `sweep_summary.png` (quality against trainable
parameters, with the Pareto front) into the sweep folder.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vitadapter.hydra_callbacks.sweep_plot import PARTS, plot_quality_vs_params

log = logging.getLogger(__name__)

# the trainable parameters, by part (vitadapter.utils.params), and all parameters
METRIC_PREFIXES = ("params/trainable", *(key for key, _ in PARTS), "params/total")
# what each run cost (see vitadapter.cost.run_cost), reported after the quality metrics
COST_KEYS = ("perf/train_step_ms", "perf/peak_memory_mb", "perf/peak_memory_kind", "perf/infer_ms_per_image",
             "ckpt/size_mb")
# the swept PEFT method gets its own column, first after the job
METHOD_OVERRIDE = "model/adapter"
METHOD_COLUMN = "method"


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
        single job), and one row per job with those values, the parameter counts, the metrics and
        the cost (None if missing). A swept `model/adapter` is the column `method`, first.
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
    if METHOD_OVERRIDE in keys:
        keys = [METHOD_OVERRIDE, *(k for k in keys if k != METHOD_OVERRIDE)]
    rows = []
    for name, overrides, metrics in jobs:
        row: dict[str, Any] = {"job": name}
        row.update({METHOD_COLUMN if k == METHOD_OVERRIDE else k: overrides.get(k) for k in keys})
        row.update({m: metrics.get(m) for m in (*METRIC_PREFIXES, *metric_keys, *COST_KEYS)})
        rows.append(row)
    return [METHOD_COLUMN if k == METHOD_OVERRIDE else k for k in keys], rows


def _job_order(overrides_file: Path) -> tuple[int, str]:
    name = overrides_file.parent.parent.name
    return (int(name), name) if name.isdigit() else (1 << 30, name)


def write_sweep_summary(sweep_dir: str | Path, metric_keys: list[str], mode: str = "max") -> Path:
    """Writes `sweep_summary.csv`, `.md` and `.png` into the sweep folder and returns the CSV path.

    Args:
        sweep_dir: the multirun folder.
        metric_keys: the monitored metric first (the figure's quality axis), then further metrics.
        mode: "max" when a higher monitored metric is better, "min" when lower is.
    """
    sweep_dir = Path(sweep_dir)
    keys, rows = collect_sweep_rows(sweep_dir, metric_keys)
    columns = list(rows[0]) if rows else ["job", *METRIC_PREFIXES, *metric_keys, *COST_KEYS]
    csv_path = sweep_dir / "sweep_summary.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    (sweep_dir / "sweep_summary.md").write_text("\n".join(lines) + "\n")
    if metric_keys:
        write_sweep_plot(rows, keys, metric_keys[0], sweep_dir / "sweep_summary.png", mode)
    return csv_path


def write_sweep_plot(rows: list[dict[str, Any]], keys: list[str], metric: str, png_path: Path,
                     mode: str = "max") -> list[str]:
    """Plots `metric` against `params/trainable` per row, labelled by its swept values, and (when the rows hold
    them) each row's trainable parameters by part.

    Rows without either figure (or with no trainable parameter) are left out of the figure.

    Returns:
        The jobs on the Pareto front, by increasing trainable parameters.
    """
    plotted = [r for r in rows if r.get(metric) is not None and (r.get("params/trainable") or 0) > 0]
    if len(plotted) < len(rows):
        log.warning("sweep figure: %d job(s) without %s or params/trainable left out", len(rows) - len(plotted),
                    metric)
    points = [(float(r["params/trainable"]), float(r[metric])) for r in plotted]
    if len(rows) == 1:  # a lone job's keys are all its overrides: too long for a label
        keys = [k for k in keys if k == METHOD_COLUMN]
    labels = [", ".join(str(r[k]) for k in keys) if keys else str(r["job"]) for r in plotted]
    parts = [{key: r.get(key) for key, _ in PARTS} for r in plotted]
    has_parts = any(value is not None for part in parts for value in part.values())
    front = plot_quality_vs_params(points, labels, png_path, metric, maximize=mode != "min",
                                   parts=parts if has_parts else None)
    return [plotted[i]["job"] for i in front]


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


class SweepSummary(Callback):
    """Writes the sweep summary when a multirun ends (configured in vitadapter/configs/hydra/default.yaml)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        monitor = config.get("monitor") or {}
        metrics = list(dict.fromkeys([m for m in [monitor.get("metric"), *monitor.get("report", [])] if m]))
        path = write_sweep_summary(config.hydra.sweep.dir, metrics, monitor.get("mode", "max"))
        log.info("sweep summary: %s", path)
