"""The sweep's quality-vs-trainable-parameters figure and its Pareto front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pareto_front(points: Sequence[tuple[float, float]], maximize: bool = True) -> list[int]:
    """Indices of the points that no other point dominates, by increasing cost.

    A point (cost, quality) is dominated by another with cost <= and quality >= (<= when
    `maximize` is False), strictly better in at least one; equal points do not dominate each other.

    Args:
        points: (cost, quality) pairs, e.g. (trainable parameters, mIoU).
        maximize: whether higher quality is better.

    Returns:
        The front's indices into `points`, sorted by cost (then index).
    """
    sign = 1.0 if maximize else -1.0

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        no_worse = a[0] <= b[0] and sign * a[1] >= sign * b[1]
        return no_worse and (a[0] < b[0] or sign * a[1] > sign * b[1])

    front = [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]
    return sorted(front, key=lambda i: (points[i][0], i))


def plot_quality_vs_params(points: Sequence[tuple[float, float]], labels: Sequence[str], png_path: str | Path,
                           metric: str, maximize: bool = True) -> list[int]:
    """Plots one labelled point per run (log-scale parameters) and the Pareto front as a step line.

    Args:
        points: per run, (trainable parameters, quality); parameters must be positive.
        labels: per run, its label (e.g. the swept values).
        png_path: where to write the figure.
        metric: the quality metric's name (the y label).
        maximize: whether higher quality is better.

    Returns:
        The Pareto front's indices (see `pareto_front`).
    """
    front = pareto_front(points, maximize)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue", zorder=2, label="run")
        for (x, y), label in zip(points, labels):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        xs, ys = [points[i][0] for i in front], [points[i][1] for i in front]
        ax.step(xs, ys, where="post", color="tab:red", zorder=1, label="Pareto front")
        ax.scatter(xs, ys, facecolors="none", edgecolors="tab:red", s=90, zorder=3)
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no run reports {metric} and params/trainable", ha="center", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set(xlabel="params/trainable (log scale)", ylabel=metric, title=f"{metric} against trainable parameters")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return front
