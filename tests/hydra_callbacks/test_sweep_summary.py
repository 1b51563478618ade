"""The sweep summary from a hand-made sweep folder: table rows, the method column, the figure, the Pareto front."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

from vitadapter.hydra_callbacks.sweep_plot import pareto_front, place_labels, plot_quality_vs_params
from vitadapter.hydra_callbacks.sweep_summary import COST_KEYS, SweepSummary, collect_sweep_rows, write_sweep_plot

# method -> (params/trainable, val/mIoU); convpass's job wrote no metrics.json (a failed job)
JOBS = {
    "none": (1_000, 20.0),
    "bitfit": (2_000, 30.0),
    "norm": (2_000, 25.0),  # dominated by bitfit: as many parameters, lower mIoU
    "bottleneck": (5_000, 30.0),  # dominated by bitfit: more parameters, same mIoU
    "full": (100_000, 40.0),
    "convpass": None,
}


def cost(index: int) -> dict[str, float | str]:
    return {"perf/train_step_ms": 10.0 + index, "perf/peak_memory_mb": 100.0 + index,
            "perf/peak_memory_kind": "cuda_allocated", "perf/infer_ms_per_image": 1.5 + index,
            "ckpt/size_mb": 0.25 * (index + 1)}


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    for index, (method, figures) in enumerate(JOBS.items()):
        job = tmp_path / str(index)
        (job / ".hydra").mkdir(parents=True)
        overrides = ["experiment=demo_seg", f"model/adapter={method}", "trainer.max_steps=10"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if figures is not None:
            trainable, miou = figures
            metrics = {"params/trainable": trainable, "params/total": 10**6, "val/mIoU": miou, "val/aAcc": 90.0,
                       **cost(index)}
            (job / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path


def test_pareto_front_on_hand_made_points() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(3.0, 2.0), (1.0, 1.0), (2.0, 3.0)]) == [1, 2]  # (3, 2): more and worse than (2, 3)
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # equal points do not dominate each other
    assert pareto_front([(1.0, 2.0), (1.0, 1.0)]) == [0]  # same cost, lower quality
    assert pareto_front([(2.0, 1.0), (1.0, 1.0)]) == [1]  # same quality, higher cost
    assert pareto_front([(5.0, 1.0), (1.0, 1.0), (1.0, 1.0), (3.0, 4.0)]) == [1, 2, 3]
    # lower is better (e.g. a loss): the cheapest point dominates a costlier one with a higher loss
    assert pareto_front([(1.0, 0.5), (2.0, 0.7), (3.0, 0.2)], maximize=False) == [0, 2]


def test_summary_rows_columns_figure_and_front(sweep_dir: Path) -> None:
    config = OmegaConf.create({"monitor": {"metric": "val/mIoU", "mode": "max", "report": []},
                               "hydra": {"sweep": {"dir": str(sweep_dir)}}})
    SweepSummary().on_multirun_end(config)

    with open(sweep_dir / "sweep_summary.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    parts = ["params/trainable_adapter", "params/trainable_neck", "params/trainable_head"]
    assert reader.fieldnames == ["job", "method", "params/trainable", *parts, "params/total", "val/mIoU", *COST_KEYS]
    assert [r["method"] for r in rows] == list(JOBS)
    assert [r["val/mIoU"] for r in rows] == ["20.0", "30.0", "25.0", "30.0", "40.0", ""]
    assert [r["params/trainable"] for r in rows] == ["1000", "2000", "2000", "5000", "100000", ""]
    for index, row in enumerate(rows[:-1]):
        assert {k: row[k] for k in COST_KEYS} == {k: str(v) for k, v in cost(index).items()}

    md = (sweep_dir / "sweep_summary.md").read_text().splitlines()
    assert md[0] == "| " + " | ".join(reader.fieldnames) + " |"
    assert md[2] == "| 0 | none | 1000 | — | — | — | 1000000 | 20.00 | 10.00 | 100.00 | cuda_allocated | 1.50 | 0.25 |"
    assert md[-1].startswith("| 5 | convpass | — |") and len(md) == 2 + len(JOBS)

    png = sweep_dir / "sweep_summary.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (700, 450)


def test_front_holds_the_undominated_jobs(sweep_dir: Path, tmp_path: Path) -> None:
    keys, rows = collect_sweep_rows(sweep_dir, ["val/mIoU"])
    assert keys == ["method"]  # experiment and max_steps do not vary
    front = write_sweep_plot(rows, keys, "val/mIoU", tmp_path / "front.png")
    assert front == ["0", "1", "4"]  # none, bitfit, full
    assert (tmp_path / "front.png").stat().st_size > 0


def test_lower_is_better_front(sweep_dir: Path, tmp_path: Path) -> None:
    _, rows = collect_sweep_rows(sweep_dir, ["val/mIoU"])
    # read as a loss: only the cheapest job and those cheaper-or-equal with less are kept
    assert write_sweep_plot(rows, ["method"], "val/mIoU", tmp_path / "min.png", mode="min") == ["0"]


def test_swept_values_besides_the_method_keep_their_columns(tmp_path: Path) -> None:
    for index, (method, dim) in enumerate([("bottleneck", 4), ("bottleneck", 8), ("convpass", 4)]):
        (tmp_path / str(index) / ".hydra").mkdir(parents=True)
        overrides = [f"model.adapter.bottleneck_dim={dim}", f"model/adapter={method}"]
        (tmp_path / str(index) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    keys, rows = collect_sweep_rows(tmp_path, ["val/mIoU"])
    assert keys == ["method", "model.adapter.bottleneck_dim"]
    assert [(r["method"], r["model.adapter.bottleneck_dim"]) for r in rows] == [("bottleneck", "4"),
                                                                               ("bottleneck", "8"),
                                                                               ("convpass", "4")]
    assert list(rows[0])[:3] == ["job", "method", "model.adapter.bottleneck_dim"]


def test_labels_of_close_points_do_not_overlap() -> None:
    """Twelve runs, several with nearly the same parameters and quality (as none / norm / bitfit in a real sweep):
    every label box is clear of the others, of every point and of the legend, and inside the axes."""
    import matplotlib.pyplot as plt

    points = [(4.3e5, 30.1), (4.33e5, 30.5), (4.39e5, 31.0), (4.42e5, 31.2), (4.68e5, 30.9), (5.04e5, 31.5),
              (5.05e5, 31.6), (5.5e5, 33.0), (5.8e5, 33.1), (5.8e5, 38.0), (1.08e6, 36.0), (2.33e6, 35.0)]
    labels = ["none", "norm", "bitfit", "ssf", "vpt", "lora", "dora", "bottleneck", "convpass", "convpass_demo",
              "vit_adapter", "full"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_xscale("log")
    ax.scatter(*zip(*points))
    ax.legend(["run"], loc="lower right")
    ax.margins(x=0.15, y=0.12)
    fig.tight_layout()
    texts = place_labels(ax, points, labels)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert [t.get_text() for t in texts] == labels
    frame = ax.get_window_extent(renderer)
    legend = ax.get_legend().get_window_extent(renderer)
    for i, box in enumerate(boxes):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        assert not box.overlaps(legend)
        assert not any(box.overlaps(other) for other in boxes[i + 1:]), labels[i]
        for x, y in (ax.transData.transform(p) for p in points):
            assert not (box.x0 < x < box.x1 and box.y0 < y < box.y1), labels[i]
    plt.close(fig)


def test_figure_shows_the_trainable_parameters_by_part(tmp_path: Path) -> None:
    parts = [{"params/trainable_adapter": 0, "params/trainable_neck": 250_000, "params/trainable_head": 180_000},
             {"params/trainable_adapter": 1_900_000, "params/trainable_neck": 250_000, "params/trainable_head": 180_000}]
    plot_quality_vs_params([(430_000, 30.0), (2_330_000, 35.0)], ["none", "full"], tmp_path / "parts.png",
                           "val/mIoU", parts=parts)
    with Image.open(tmp_path / "parts.png") as image:
        assert image.size == (1300, 500)  # two panels: quality against parameters, parameters by part


def test_a_swept_method_preset_is_the_method_column(tmp_path: Path) -> None:
    for index, preset in enumerate(["none", "vit_adapter"]):
        (tmp_path / str(index) / ".hydra").mkdir(parents=True)
        overrides = ["experiment=demo_seg_pretrained", f"+method={preset}"]
        (tmp_path / str(index) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    keys, rows = collect_sweep_rows(tmp_path, ["val/mIoU"])
    assert keys == ["method"] and [r["method"] for r in rows] == ["none", "vit_adapter"]
