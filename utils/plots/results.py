"""Training curves: one small chart per column of results.csv, tiled into results.png."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from utils.plots.colors import mpl_color
from utils.plots.figure import new_figure, save_figure, style_axes


def results_figure(csv_path: str | Path, cols: int = 4) -> Figure | None:
    """Every metric and loss column of results.csv against epoch (lr columns 'x/...' skipped);
    None when the file is missing or has no rows."""
    csv_path = Path(csv_path)
    if not csv_path.exists():
        return None
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    keys = [k for k in rows[0] if k != "epoch" and not k.startswith("x/")]
    nrows = max(-(-len(keys) // cols), 1)
    fig = new_figure(4.2 * cols, 3.0 * nrows, dpi=100)
    axs = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, k in zip(axs, keys):
        style_axes(ax)
        # a single epoch would be an invisible zero-length line: draw it as a dot
        ax.plot(epochs, [float(r[k]) for r in rows], color=mpl_color(0), linewidth=1.8,
                marker="o" if len(epochs) == 1 else None)
        ax.set(title=k, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole numbers
    for ax in axs[len(keys):]:
        ax.set_axis_off()  # blank tiles that fill the last row
    return fig


def plot_results(csv_path: str | Path, path: str | Path, cols: int = 4) -> np.ndarray | None:
    """Draw results.csv into path (see results_figure); the BGR image written, or None if nothing to draw."""
    fig = results_figure(csv_path, cols)
    return None if fig is None else save_figure(fig, path)
