"""The sweep's figure: quality against trainable parameters with the Pareto front, and the trainable parameters of
each run by part (the method in the ViT, the neck, the head)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

# the parts a run's trainable parameters split into (vitadapter.utils.params), in drawing order, with their legend
PARTS: tuple[tuple[str, str], ...] = (
    ("params/trainable_adapter", "method (in the ViT)"),
    ("params/trainable_neck", "neck"),
    ("params/trainable_head", "head(s)"),
)
_MARKER_PX = 6  # half the side of the box kept free around each point


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


def _candidate_offsets() -> list[tuple[float, float]]:
    """Label offsets in points, nearest first: eight directions at growing distances."""
    directions = [(1, 0.4), (1, -1.4), (-1, 0.4), (-1, -1.4), (0.2, 1.2), (0.2, -2.4), (1, 1.2), (-1, 1.2)]
    return [(6 * r * dx, 6 * r * dy) for r in (1, 2, 3, 4.5) for dx, dy in directions]


def place_labels(ax: Axes, points: Sequence[tuple[float, float]], labels: Sequence[str],
                 fontsize: float = 8) -> list[Annotation]:
    """Writes each point's label where it overlaps no other label, no point and no legend, inside the axes.

    Matplotlib places annotations where it is told, overlaps included, and no maintained label-placement
    library is a dependency here; so each label takes the nearest of a few candidate offsets that is free
    (a label placed farther out gets a leader line). Call it once the axes' limits and scales are final.

    Args:
        ax: axes whose data limits are set.
        points: the labelled points, in data coordinates.
        labels: one label per point.
        fontsize: label size in points.

    Returns:
        The annotations, in the order of `points`.
    """
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    centres = [ax.transData.transform(p) for p in points]
    taken = [Bbox.from_extents(x - _MARKER_PX, y - _MARKER_PX, x + _MARKER_PX, y + _MARKER_PX) for x, y in centres]
    if ax.get_legend() is not None:
        taken.append(ax.get_legend().get_window_extent(renderer))
    placed: list[Annotation] = []
    for point, label in zip(points, labels):
        chosen = None
        for dx, dy in _candidate_offsets():
            leader = {"arrowstyle": "-", "color": "0.5", "lw": 0.6} if abs(dx) > 6 or abs(dy) > 9 else None
            text = ax.annotate(label, point, xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx >= 0 else "right", va="bottom", arrowprops=leader)
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in taken):
                chosen = text
                break
            text.remove()
        if chosen is None:  # nowhere free: the nearest spot, overlapping
            dx, dy = _candidate_offsets()[0]
            chosen = ax.annotate(label, point, xytext=(dx, dy), textcoords="offset points", fontsize=fontsize)
        taken.append(chosen.get_window_extent(renderer))
        placed.append(chosen)
    return placed


def _plot_parts(ax: Axes, labels: Sequence[str], parts: Sequence[Mapping[str, float]]) -> None:
    """Horizontal bars of each run's trainable parameters, stacked by part, with the counts written beside them."""
    rows = range(len(labels))
    left = [0.0] * len(labels)
    for key, legend in PARTS:
        values = [float(p.get(key) or 0) for p in parts]
        ax.barh(rows, values, left=left, label=legend, height=0.6)
        left = [a + b for a, b in zip(left, values)]
    for row, part in zip(rows, parts):
        counts = " + ".join(_short(float(part.get(key) or 0)) for key, _ in PARTS)
        ax.text(left[row], row, f" {counts}", va="center", fontsize=7)
    ax.set_yticks(list(rows), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left or [1.0]) * 1.6)  # room for the counts
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _short(value)))
    ax.set(xlabel="trainable parameters", title="trainable parameters by part")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(PARTS), fontsize=7, frameon=False)
    ax.grid(alpha=0.3, axis="x")


def _short(count: float) -> str:
    if count >= 1e6:
        return f"{count / 1e6:.2f}M"
    return f"{count / 1e3:.1f}k" if count >= 1e3 else f"{count:.0f}"


def plot_quality_vs_params(points: Sequence[tuple[float, float]], labels: Sequence[str], png_path: str | Path,
                           metric: str, maximize: bool = True,
                           parts: Sequence[Mapping[str, float]] | None = None) -> list[int]:
    """Plots one labelled point per run (log-scale parameters) and the Pareto front as a step line; with `parts`,
    a second panel of each run's trainable parameters by part.

    Args:
        points: per run, (trainable parameters, quality); parameters must be positive.
        labels: per run, its label (e.g. the swept values).
        png_path: where to write the figure.
        metric: the quality metric's name (the y label).
        maximize: whether higher quality is better.
        parts: per run, its `PARTS` counts (`params/trainable_adapter`, `_neck`, `_head`), or None.

    Returns:
        The Pareto front's indices (see `pareto_front`).
    """
    front = pareto_front(points, maximize)
    if parts:
        fig, (ax, parts_ax) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
        _plot_parts(parts_ax, labels, parts)
    else:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_xscale("log")
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue", zorder=2, label="run")
        xs, ys = [points[i][0] for i in front], [points[i][1] for i in front]
        ax.step(xs, ys, where="post", color="tab:red", zorder=1, label="Pareto front")
        ax.scatter(xs, ys, facecolors="none", edgecolors="tab:red", s=90, zorder=3)
        ax.legend(loc="lower right", fontsize=8)
        ax.margins(x=0.15, y=0.12)
    else:
        ax.text(0.5, 0.5, f"no run reports {metric} and params/trainable", ha="center", transform=ax.transAxes)
    ax.set(xlabel="params/trainable (log scale)", ylabel=metric, title=f"{metric} against trainable parameters")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    ax.autoscale_view()
    place_labels(ax, points, labels)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return front
