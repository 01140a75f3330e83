"""matplotlib without pyplot: each figure is a matplotlib.figure.Figure drawn on its own Agg canvas, so no
global backend is chosen and no pyplot state (current figure, open-figure registry) is touched; a figure
is freed as soon as it goes out of scope. Only matplotlib's bundled DejaVu fonts are used."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 150  # crisp text when a PNG is zoomed, still small files (~100 kB)
GRID, AXIS = "#dddddd", "#555555"


def new_figure(width: float, height: float, dpi: int = DPI) -> Figure:
    """A white figure of width x height inches with its own Agg canvas; constrained layout keeps
    titles, tick labels and legends from overlapping."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def style_axes(ax: Axes, grid: str = "both") -> None:
    """Plain look shared by all figures: light grid behind the data, grey frame and ticks."""
    ax.set_axisbelow(True)
    if grid:
        ax.grid(True, axis=grid, color=GRID, linewidth=0.8)
    for s in ax.spines.values():
        s.set_color(AXIS)
    ax.tick_params(colors=AXIS, labelcolor="#333333")


def render(fig: Figure) -> np.ndarray:
    """The figure as a BGR uint8 image (the layout cv2 and the callers use)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return cv2.cvtColor(np.asarray(canvas.buffer_rgba()), cv2.COLOR_RGBA2BGR)


def write_image(img: np.ndarray, path: str | Path) -> Path:
    """Write a BGR image (format from the suffix), creating parent folders; raises if cv2 cannot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: cv2 could not write the image")
    return path


def save_figure(fig: Figure, path: str | Path) -> np.ndarray:
    """Render fig, write it to path and return the BGR image written."""
    img = render(fig)
    write_image(img, path)
    return img
