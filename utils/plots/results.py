"""Training curves: one small chart per column of results.csv, tiled into results.png."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from utils.plots.charts import line_chart, save_png


def plot_results(csv_path: str | Path, path: str | Path, cols: int = 4) -> np.ndarray | None:
    """Draw every metric and loss column of results.csv against epoch (lr columns skipped)."""
    csv_path = Path(csv_path)
    if not csv_path.exists():
        return None
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    keys = [k for k in rows[0] if k != "epoch" and not k.startswith("x/")]
    tiles = []
    for k in keys:
        y = [float(r[k]) for r in rows]
        tiles.append(line_chart({k: (epochs, y)}, title=k, xlabel="epoch", legend="", size=(420, 300)))
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    save_png(grid, path)
    return grid
