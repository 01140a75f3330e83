"""labels.png for a training run: class counts, box size histogram with the size buckets, and
box width vs height, as one matplotlib figure (labels_figure builds it, plot_labels writes it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.axis import Axis
from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator

from utils.data.coco import SIZE_EDGES, SIZE_LABELS, size_buckets
from utils.plots.figure import new_figure, save_figure, style_axes
from utils.text import plot_text

BLUE, ORANGE, EDGE = "#2872b4", "#f08c28", "#999999"
MAX_ROWS = 30  # beyond 30 class rows the labels become unreadable; the rest are summed in a note
DENSITY = ListedColormap(colormaps["Blues"](np.linspace(0.3, 1.0, 256)))  # Blues without its near-white start


def _count_locator() -> MaxNLocator:
    """Ticks for counts: whole numbers in 1-2-2.5-5 steps, like matplotlib's default ticks."""
    return MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10])


def _axis_top(px: np.ndarray) -> float:
    """Upper end of a log pixel axis: 1024, or the power of two above the largest value with a margin so
    that its bin or hexagon is not cut by the frame."""
    return float(2 ** np.ceil(np.log2(max(1024.0, float(px.max()) * 1.1 if px.size else 1.0))))


def _pixel_ticks(axis: Axis, base: int) -> None:
    """Ticks at the powers of base (2: 1, 2, 4, ...; 4: 1, 4, 16, ...) of a log pixel axis, written as
    plain numbers (the log axis would write 2^k)."""
    axis.set_major_locator(LogLocator(base=base, numticks=20))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(lambda v, _: f"{v:g}")


def _class_panel(ax: Axes, names: list[str], counts: np.ndarray) -> None:
    n_show = min(len(names), MAX_ROWS)
    order = np.argsort(-counts, kind="stable")[:n_show] if len(names) > n_show else np.arange(len(names))
    style_axes(ax, grid="x")
    bars = ax.barh(range(len(order)), counts[order], height=0.7, color=BLUE)
    fs = 9 if n_show <= 15 else 7
    ax.set_yticks(range(len(order)), [plot_text(names[k], 20) for k in order], fontsize=fs)
    ax.set_ylim(len(order) - 0.5, -0.5)  # first class on top
    ax.bar_label(bars, padding=3, fontsize=fs)
    ax.set_xlim(0, max(int(counts.max()) if len(counts) else 0, 1) * 1.15)  # room for the count labels
    ax.xaxis.set_major_locator(_count_locator())  # counts: no 0.5 ticks
    ax.set_title("instances per class")
    if len(names) > n_show:
        rest = int(counts.sum() - counts[order].sum())
        ax.set_xlabel(f"+ {len(names) - n_show} more classes, {rest} boxes")


def _size_panel(ax: Axes, sides: np.ndarray, sides_train: np.ndarray | None, imgsz: int) -> None:
    hi = _axis_top(sides if sides_train is None else np.concatenate([sides, sides_train]))  # upscaled ones too
    edges = 2 ** np.arange(0.0, np.log2(hi) + 0.25, 0.25)  # 4 bins per octave
    style_axes(ax, grid="y")
    ax.hist(np.maximum(sides, 1.0), edges, color=BLUE, label="original pixels")
    if sides_train is not None:
        ax.hist(np.maximum(sides_train, 1.0), edges, histtype="step", color=ORANGE, linewidth=1.3,
                label=f"resized to imgsz {imgsz}")
    ax.set_xscale("log", base=2)
    ax.set_xlim(1, hi)
    _pixel_ticks(ax.xaxis, 2)
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.4)  # headroom for the bucket counts written inside the plot
    ax.yaxis.set_major_locator(_count_locator())
    for e in SIZE_EDGES:
        ax.axvline(e, color=EDGE, linestyle="--", linewidth=0.8)
    bounds = [1.0, *SIZE_EDGES, hi]
    counts = size_buckets(sides)
    counts_train = size_buckets(sides_train) if sides_train is not None else None
    for k, name in enumerate(SIZE_LABELS):
        xc = float(np.sqrt(bounds[k] * bounds[k + 1]))  # middle of the bucket on the log axis
        rows = [(name, "black"), (str(int(counts[k])), BLUE)]
        if counts_train is not None:
            rows.append((str(int(counts_train[k])), ORANGE))
        for r, (s, c) in enumerate(rows):  # x in data, y in axes fraction; white box hides the grid
            ax.text(xc, 0.97 - 0.06 * r, s, transform=ax.get_xaxis_transform(), ha="center", va="top",
                    fontsize=8, color=c, bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    # below the axes: inside, it would cover bars wherever the sizes happen to sit
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize=8, frameon=False)
    ax.set(title="box size sqrt(w*h), px (log scale)", xlabel="px", ylabel="boxes")


def _wh_panel(ax: Axes, wh: np.ndarray) -> None:
    hi = _axis_top(wh)
    style_axes(ax, grid="")
    if len(wh):
        w, h = np.maximum(wh, 1.0).T  # zero-size boxes sit at 1 px on the log axes
        hb = ax.hexbin(w, h, xscale="log", yscale="log", gridsize=40, mincnt=1, cmap=DENSITY,
                       extent=(0, np.log10(hi), 0, np.log10(hi)), linewidths=0.2)
        top = float(hb.get_array().max())
        # log colour from 1 box: sparse cells stay visible beside dense ones (a million boxes render as
        # fast as a hundred); vmax at least 2 so a plot of single boxes still has a scale
        hb.set_norm(LogNorm(1, max(top, 2)))
        cb = ax.figure.colorbar(hb, ax=ax, shrink=0.8, pad=0.02, label="boxes per cell")
        # plain 1-2-5 counts: the log axis' default labels are 10^k, or 2x10^0 within one decade
        cb.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        cb.ax.yaxis.set_minor_locator(NullLocator())
        cb.ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}")
    else:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
    ax.set_xlim(1, hi)
    ax.set_ylim(1, hi)
    _pixel_ticks(ax.xaxis, 4)
    _pixel_ticks(ax.yaxis, 4)
    ax.set_box_aspect(1)
    ax.set(title="box width vs height, px (log-log)", xlabel="width", ylabel="height")


def labels_figure(dataset: Any) -> Figure:
    """The figure of dataset.boxes ((n, 5) [cls, x1, y1, x2, y2] per image, original px), dataset.names
    and dataset.shapes (and imgsz: sizes after resizing too)."""
    names = list(dataset.names)
    boxes = [b for b in dataset.boxes if len(b)]
    allb = np.concatenate(boxes) if boxes else np.zeros((0, 5), np.float32)
    wh = allb[:, 3:5] - allb[:, 1:3]
    sides = np.sqrt(wh.prod(1))
    counts = np.bincount(allb[:, 0].astype(np.int64), minlength=len(names))[: len(names)]
    imgsz = int(getattr(dataset, "imgsz", 0) or 0)
    sides_train = None
    if imgsz and len(dataset.shapes):
        gain = imgsz / np.asarray(dataset.shapes).max(1)
        if not np.allclose(gain, 1.0):
            sides_train = np.concatenate([np.sqrt(((b[:, 3:5] - b[:, 1:3]).prod(1))) * g
                                          for b, g in zip(dataset.boxes, gain)])
    fig = new_figure(16, 5.4, dpi=120)
    axs = fig.subplots(1, 3, width_ratios=[1, 1.15, 1])
    _class_panel(axs[0], names, counts)
    _size_panel(axs[1], sides, sides_train, imgsz)
    _wh_panel(axs[2], wh)
    negatives = sum(len(b) == 0 for b in dataset.boxes)
    fig.suptitle(f"{len(dataset.shapes)} images ({negatives} without boxes), {len(allb)} boxes, {len(names)} classes"
                 f"   {getattr(dataset, 'json_path', '')}", x=0.01, ha="left", fontsize=11)
    return fig


def plot_labels(dataset: Any, path: str) -> str:
    """Write labels.png for dataset (see labels_figure); returns the path."""
    save_figure(labels_figure(dataset), path)
    return str(Path(path))
