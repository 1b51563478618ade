"""Files every run directory holds besides checkpoints: metrics.json and the training-curve plot."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _json_number(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None  # JSON has no NaN; an absent class's IoU is undefined, not zero
    return value


def write_metrics_json(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Writes flat metrics (tensors and floats; NaN -> null) as sorted, indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: _json_number(v) for k, v in sorted(metrics.items())}, indent=2) + "\n")
    return path


def _read_curve(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for row in rows:
        if row.get(key) not in (None, ""):
            steps.append(int(float(row["step"])))
            values.append(float(row[key]))
    return steps, values


def plot_training_curves(csv_path: str | Path, png_path: str | Path, metric: str = "val/mIoU") -> Path:
    """Plots the training loss and the validation metric over steps from a Lightning CSV log.

    Args:
        csv_path: the CSVLogger's metrics.csv.
        png_path: where to write the figure.
        metric: the validation metric to plot beside the loss.

    Returns:
        The PNG path.
    """
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4))
    steps, loss = _read_curve(rows, "train/loss")
    loss_ax.plot(steps, loss, linewidth=1)
    loss_ax.set(title="training loss", xlabel="step", ylabel="train/loss")
    steps, values = _read_curve(rows, metric)
    metric_ax.plot(steps, values, marker="o")
    metric_ax.set(title=metric, xlabel="step", ylabel=metric)
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)
