"""Hydra callbacks (configured under `hydra.callbacks` in `configs/hydra/default.yaml`).

`SweepSummary` tabulates a multirun when it ends: `sweep_summary.csv`, `.md` and `.png` (quality against
trainable parameters with the Pareto front, drawn by `sweep_plot.py`) in the sweep folder.
"""

from vitadapter.hydra_callbacks.sweep_plot import pareto_front, plot_quality_vs_params
from vitadapter.hydra_callbacks.sweep_summary import COST_KEYS, SweepSummary, collect_sweep_rows, write_sweep_summary

__all__ = ["COST_KEYS", "SweepSummary", "collect_sweep_rows", "pareto_front", "plot_quality_vs_params",
           "write_sweep_summary"]
