"""Evaluation plots (PR / F1 / P / R curves, confusion matrix, AP by size, prediction mosaics).
The charts are matplotlib Figures (built by the *_figure functions, which tests inspect); the
prediction mosaic is an image drawn with cv2. Every plot_* function writes its file and returns
the BGR image written."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from utils.plots.colors import FONT, color, mpl_color
from utils.plots.figure import new_figure, save_figure, style_axes, write_image
from utils.text import display_text, plot_text

GREY, MEAN = "#b4b4b4", "#c82828"  # class curves when there are many; the bold class-mean curve
MAX_LEGEND = 10  # more classes than this: thin grey class curves, only 'all classes' named
MAX_ANNOTATED = 30  # confusion-matrix side beyond which cell values would not fit in their cells


def _curves_figure(series: list[tuple[str, np.ndarray, np.ndarray, object, float, bool]], title: str,
                   xlabel: str, ylabel: str, legend_loc: str) -> Figure:
    """series: (name, x, y, colour, line width, named in the legend); axes fixed to [0, 1] x [0, 1.02]."""
    fig = new_figure(8, 5.6)
    ax = fig.add_subplot()
    style_axes(ax)
    named = []
    for name, x, y, c, lw, in_legend in series:
        x, y = np.asarray(x, float), np.asarray(y, float)
        (line,) = ax.plot(x, y, color=c, linewidth=lw, label=name, marker="o" if len(x) == 1 else None)
        if in_legend:
            named.append(line)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), title=title, xlabel=xlabel, ylabel=ylabel)
    if named:  # explicit handles: with many classes only the mean is named, the grey curves are not
        ax.legend(handles=named, loc=legend_loc, framealpha=0.9, fontsize=9)
    return fig


def pr_curve_figure(pr: dict[int, np.ndarray], ap50: dict[int, float], names: Sequence[str],
                    title: str = "Precision-Recall (IoU 0.5)") -> Figure:
    """pr: class index -> precision at the 101 COCO recall thresholds (entries -1 = no ground truth)."""
    rec = np.linspace(0, 1, 101)
    valid = [k for k, p in pr.items() if (np.asarray(p) > -1).any()]
    many = len(valid) > MAX_LEGEND
    series = [(f"{plot_text(names[k], 30)} {ap50.get(k, 0):.3f}", rec, np.asarray(pr[k]),
               GREY if many else mpl_color(i), 0.8 if many else 1.6, not many) for i, k in enumerate(valid)]
    if valid:
        mean = np.mean([pr[k] for k in valid], 0)
        series.append((f"all classes {np.mean([ap50.get(k, 0) for k in valid]):.3f} AP50", rec, mean, MEAN, 3.0,
                       True))
    return _curves_figure(series, title, "Recall", "Precision", "lower left")


def plot_pr_curve(pr: dict[int, np.ndarray], ap50: dict[int, float], names: Sequence[str], path: str | Path,
                  title: str = "Precision-Recall (IoU 0.5)") -> np.ndarray:
    return save_figure(pr_curve_figure(pr, ap50, names, title), path)


def conf_curve_figure(px: np.ndarray, y: np.ndarray, has_gt: np.ndarray, names: Sequence[str], ylabel: str,
                      best_conf: float | None = None) -> Figure:
    """A metric (F1, precision or recall; (K, len(px))) against confidence threshold, per class plus
    the class mean; best_conf marks the threshold at which P and R are reported."""
    ks = [k for k in range(len(y)) if has_gt[k]]
    many = len(ks) > MAX_LEGEND
    series = [(plot_text(names[k], 30), px, y[k], GREY if many else mpl_color(i), 0.8 if many else 1.6, not many)
              for i, k in enumerate(ks)]
    if ks:
        m = y[ks].mean(0)
        j = int(np.argmax(m)) if best_conf is None else int(np.argmin(np.abs(px - best_conf)))
        series.append((f"all classes {m[j]:.2f} at {px[j]:.3f}", px, m, MEAN, 3.0, True))
    # recall falls with confidence: its curves leave the top right corner free, the others the bottom left
    return _curves_figure(series, f"{ylabel}-Confidence", "Confidence", ylabel,
                          "upper right" if ylabel == "Recall" else "lower left")


def plot_conf_curve(px: np.ndarray, y: np.ndarray, has_gt: np.ndarray, names: Sequence[str], ylabel: str,
                    path: str | Path, best_conf: float | None = None) -> np.ndarray:
    return save_figure(conf_curve_figure(px, y, has_gt, names, ylabel, best_conf), path)


def confusion_matrix_figure(matrix: np.ndarray, names: Sequence[str], normalize: bool = True) -> Figure:
    """Rows predicted, columns true, last of each = background; normalised per true class. Cell values
    are written when they fit (zero cells left blank to reduce clutter)."""
    m = np.asarray(matrix, float)
    if normalize:
        m = m / np.maximum(m.sum(0, keepdims=True), 1)
    labels = [plot_text(s, 24) for s in names] + ["background"]
    n = len(labels)
    cell = min(max(9 / n, 0.22), 0.8)  # inches: large cells for a few classes, the matrix under ~20 in
    side = min(n * cell, 20.0)
    cell = side / n
    label_in = min(max(len(s) for s in labels), 24) * 0.075 + 0.5  # room for the tick labels
    fig = new_figure(side + label_in + 1.3, side + label_in + 0.9)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(np.nanmax(m)) if m.size else 1.0, 1.0)
    # aspect "auto": the layout may then shrink the cells to make room for long labels instead of letting
    # square cells push the title out of the figure; the figure size keeps them near square
    im = ax.imshow(np.ma.masked_invalid(m), cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest", aspect="auto")
    fs = float(np.clip(cell * 72 * 0.5, 4, 10))
    ax.set_xticks(range(n), labels, rotation=90, fontsize=fs)
    ax.set_yticks(range(n), labels, fontsize=fs)
    ax.xaxis.tick_top()  # true classes read along the top, like the title says
    ax.xaxis.set_label_position("top")
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion matrix" + (" (column-normalised)" if normalize else ""))
    if n <= MAX_ANNOTATED:
        fmt = ".2f" if normalize else ".0f"
        vfs = float(np.clip(cell * 72 * 0.3, 5, 11))
        for i, j in zip(*np.nonzero(np.isfinite(m) & (m != 0))):
            dark = m[i, j] / vmax > 0.55  # white text on dark cells
            ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=vfs,
                    color="white" if dark else "black")
    cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    if not normalize:
        cb.ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
    return fig


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str | Path,
                          normalize: bool = True) -> np.ndarray:
    return save_figure(confusion_matrix_figure(matrix, names, normalize), path)


def _bar_figure(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str) -> Figure:
    """One bar per label, its value written on top while bars are wide enough; many labels stand vertical."""
    n = len(labels)
    many = n > 12
    fig = new_figure(min(max(8.0, 1.5 + 0.2 * n), 24.0), 5)
    ax = fig.add_subplot()
    style_axes(ax, grid="y")
    colors = [mpl_color(i if n <= 10 else 0) for i in range(n)]  # distinct colours while the palette lasts
    short = [s if len(s) <= 20 else s[:19].rstrip("\\") + "…" for s in labels]  # no half of an escaped '$'
    bars = ax.bar(range(n), values, width=0.7, color=colors)
    ax.set_xticks(range(n), short, rotation=90 if many else 0, fontsize=8 if many else 10)
    ax.set_xlim(-0.6, n - 0.4)
    top = max(max(values, default=0) * 1.15, 0.05)
    ax.set_ylim(0, top)
    if n <= 20:
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=8 if many else 9)
    ax.set(title=title, ylabel=ylabel)
    return fig


def ap_by_size_figure(metrics: dict) -> Figure:
    """AP over the size buckets (very tiny ... large) and overall: where the detector fails."""
    keys = [("AP_vt", "<8 px"), ("AP_t", "8-16"), ("AP_s16", "16-32"), ("APm", "32-96"), ("APl", ">96"),
            ("AP", "all")]
    labels = [lab if float(metrics[k]) >= 0 else f"{lab} (no gt)" for k, lab in keys if k in metrics]
    vals = [max(float(metrics[k]), 0.0) for k, _ in keys if k in metrics]  # -1 (no ground truth) drawn as 0
    return _bar_figure(labels, vals, "AP@.50:.95 by object size (sqrt area, original px)", "AP")


def plot_ap_by_size(metrics: dict, path: str | Path) -> np.ndarray:
    return save_figure(ap_by_size_figure(metrics), path)


def per_class_ap_figure(names: Sequence[str], ap: Sequence[float]) -> Figure:
    return _bar_figure([plot_text(s) for s in names], [max(float(a), 0.0) for a in ap], "AP@.50:.95 per class",
                       "AP")


def plot_per_class_ap(names: Sequence[str], ap: Sequence[float], path: str | Path) -> np.ndarray:
    return save_figure(per_class_ap_figure(names, ap), path)


def _box(img: np.ndarray, xyxy: Sequence[float], col: tuple[int, int, int], label: str = "", thick: int = 1) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    cv2.rectangle(img, (x1, y1), (x2, y2), col, thick, cv2.LINE_AA)
    if label:
        (w, h), _ = cv2.getTextSize(label, FONT, 0.35, 1)
        y = y1 - 2 if y1 - h - 3 > 0 else y2 + h + 2
        cv2.rectangle(img, (x1, y - h - 2), (x1 + w + 2, y + 1), col, -1)
        cv2.putText(img, label, (x1 + 1, y - 1), FONT, 0.35, (255, 255, 255), 1, cv2.LINE_AA)


def plot_predictions(imgs: torch.Tensor | np.ndarray, dets: Sequence[torch.Tensor | np.ndarray] | None,
                     targets: torch.Tensor | np.ndarray | None, names: Sequence[str], path: str | Path,
                     paths: Sequence[str] | None = None, conf_thres: float = 0.25, max_imgs: int = 16,
                     max_side: int = 1920) -> np.ndarray:
    """Mosaic of a batch: ground truth (thin green) and detections >= conf_thres (class colour,
    'name conf'). imgs uint8 (B,3,H,W) RGB, dets per image (n,6) xyxy in the same pixels,
    targets (M,6) [batch_idx, cls, cx, cy, w, h]. Drawn with cv2 on the pixels themselves."""
    im = imgs.detach().cpu().numpy() if isinstance(imgs, torch.Tensor) else np.asarray(imgs)
    tg = targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else targets
    b = min(len(im), max_imgs)
    if b == 0:
        raise ValueError("plot_predictions: empty batch")
    h, w = im.shape[2:]
    ns = math.ceil(math.sqrt(b))
    scale = min(max(1.0, 320 / max(h, w)), max_side / (ns * max(h, w)))  # small inputs are enlarged
    th, tw = int(h * scale), int(w * scale)
    mosaic = np.full((ns * th, ns * tw, 3), 255, np.uint8)
    for i in range(b):
        tile = cv2.resize(np.ascontiguousarray(im[i].transpose(1, 2, 0)[..., ::-1]), (tw, th))
        if tg is not None and len(tg):
            for t in tg[tg[:, 0] == i]:
                cx, cy, bw, bh = t[2:6] * scale
                _box(tile, (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), (60, 200, 60), "", 1)
        if dets is not None and i < len(dets):
            d = dets[i].detach().cpu().numpy() if isinstance(dets[i], torch.Tensor) else np.asarray(dets[i])
            for x1, y1, x2, y2, c, k in d[d[:, 4] >= conf_thres] if len(d) else []:
                name = display_text(names[int(k)], 30) if int(k) < len(names) else str(int(k))
                _box(tile, np.array([x1, y1, x2, y2]) * scale, color(int(k)), f"{name} {c:.2f}", 1)
        if paths is not None and i < len(paths):
            name = Path(paths[i]).name[:40]
            (nw, nh), _ = cv2.getTextSize(name, FONT, 0.4, 1)
            cv2.rectangle(tile, (0, 0), (nw + 8, nh + 8), (40, 40, 40), -1)
            cv2.putText(tile, name, (4, 4 + nh), FONT, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        r, c = divmod(i, ns)
        mosaic[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile
        cv2.rectangle(mosaic, (c * tw, r * th), ((c + 1) * tw - 1, (r + 1) * th - 1), (255, 255, 255), 2)
    write_image(mosaic, path)
    return mosaic
