"""Evaluation plots (PR / F1 / P / R curves, confusion matrix, AP by size, prediction mosaics),
drawn with the cv2 primitives of utils/plots/charts.py. Every function writes a PNG and returns it."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from utils.plots import charts

GREY = (170, 170, 170)
MAX_LEGEND = 10  # more classes than this: thin grey class curves, only 'all classes' named


def plot_pr_curve(pr: dict[int, np.ndarray], ap50: dict[int, float], names: Sequence[str], path: str | Path,
                  title: str = "Precision-Recall (IoU 0.5)") -> np.ndarray:
    """pr: class index -> precision at the 101 COCO recall thresholds (entries -1 = no ground truth)."""
    rec = np.linspace(0, 1, 101)
    series, colors, thick = {}, {}, {}
    valid = [k for k, p in pr.items() if (np.asarray(p) > -1).any()]
    many = len(valid) > MAX_LEGEND
    for i, k in enumerate(valid):
        key = f"{names[k]} {ap50.get(k, 0):.3f}"
        series[key] = (rec, np.asarray(pr[k]))
        colors[key] = GREY if many else charts.color(i)
    if valid:
        mean = np.mean([pr[k] for k in valid], 0)
        key = f"all classes {np.mean([ap50.get(k, 0) for k in valid]):.3f} AP50"
        series[key], colors[key], thick[key] = (rec, mean), (40, 40, 200), 4
    return charts.line_chart(series, title, "Recall", "Precision", (0, 1), (0, 1.02), colors=colors,
                             thickness=thick, legend="bl", legend_names=[key] if many and valid else None,
                             path=path)


def plot_conf_curve(px: np.ndarray, y: np.ndarray, has_gt: np.ndarray, names: Sequence[str], ylabel: str,
                    path: str | Path, best_conf: float | None = None) -> np.ndarray:
    """A metric (F1, precision or recall; (K, len(px))) against confidence threshold, per class plus
    the class mean; best_conf marks the threshold at which P and R are reported."""
    ks = [k for k in range(len(y)) if has_gt[k]]
    many = len(ks) > MAX_LEGEND
    series, colors, thick = {}, {}, {}
    for i, k in enumerate(ks):
        series[names[k]], colors[names[k]] = (px, y[k]), GREY if many else charts.color(i)
    key = "all classes"
    if ks:
        m = y[ks].mean(0)
        j = int(np.argmax(m)) if best_conf is None else int(np.argmin(np.abs(px - best_conf)))
        key = f"all classes {m[j]:.2f} at {px[j]:.3f}"
        series[key], colors[key], thick[key] = (px, m), (40, 40, 200), 4
    return charts.line_chart(series, f"{ylabel}-Confidence", "Confidence", ylabel, (0, 1), (0, 1.02),
                             colors=colors, thickness=thick, legend="bl" if ylabel != "Recall" else "tr",
                             legend_names=[key] if many else None, path=path)


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str | Path,
                          normalize: bool = True) -> np.ndarray:
    """Rows predicted, columns true, last of each = background; normalised per true class."""
    m = np.asarray(matrix, float)
    if normalize:
        m = m / np.maximum(m.sum(0, keepdims=True), 1)
    labels = list(names) + ["background"]
    fmt = ".2f" if normalize else ".0f"
    return charts.heatmap(m, labels, labels, "Confusion matrix" + (" (column-normalised)" if normalize else ""),
                          "True", "Predicted", fmt=fmt, annotate=len(labels) <= 30,
                          vmin=0, vmax=1 if normalize else None, path=path)


def plot_ap_by_size(metrics: dict, path: str | Path) -> np.ndarray:
    """Bar chart of AP over the size buckets (very tiny ... large): where the detector fails."""
    keys = [("AP_vt", "<8 px"), ("AP_t", "8-16"), ("AP_s16", "16-32"), ("APm", "32-96"), ("APl", ">96"),
            ("AP", "all")]
    labels = [lab if float(metrics[k]) >= 0 else f"{lab} (no gt)" for k, lab in keys if k in metrics]
    vals = [max(float(metrics[k]), 0.0) for k, _ in keys if k in metrics]
    return charts.bar_chart(labels, vals, "AP@.50:.95 by object size (sqrt area, original px)",
                            "", "AP", ylim=(0, max(max(vals, default=0) * 1.15, 0.05)), path=path)


def plot_per_class_ap(names: Sequence[str], ap: Sequence[float], path: str | Path) -> np.ndarray:
    return charts.bar_chart(list(names), [max(float(a), 0.0) for a in ap], "AP@.50:.95 per class", "", "AP",
                            ylim=(0, max(max(ap, default=0) * 1.15, 0.05)), path=path)


def _box(img: np.ndarray, xyxy: Sequence[float], col: tuple[int, int, int], label: str = "", thick: int = 1) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    cv2.rectangle(img, (x1, y1), (x2, y2), col, thick, cv2.LINE_AA)
    if label:
        (w, h), _ = cv2.getTextSize(label, charts.FONT, 0.35, 1)
        y = y1 - 2 if y1 - h - 3 > 0 else y2 + h + 2
        cv2.rectangle(img, (x1, y - h - 2), (x1 + w + 2, y + 1), col, -1)
        cv2.putText(img, label, (x1 + 1, y - 1), charts.FONT, 0.35, (255, 255, 255), 1, cv2.LINE_AA)


def plot_predictions(imgs: torch.Tensor | np.ndarray, dets: Sequence[torch.Tensor | np.ndarray] | None,
                     targets: torch.Tensor | np.ndarray | None, names: Sequence[str], path: str | Path,
                     paths: Sequence[str] | None = None, conf_thres: float = 0.25, max_imgs: int = 16,
                     max_side: int = 1920) -> np.ndarray:
    """Mosaic of a batch: ground truth (thin green) and detections >= conf_thres (class colour,
    'name conf'). imgs uint8 (B,3,H,W) RGB, dets per image (n,6) xyxy in the same pixels,
    targets (M,6) [batch_idx, cls, cx, cy, w, h]."""
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
                name = names[int(k)] if int(k) < len(names) else str(int(k))
                _box(tile, np.array([x1, y1, x2, y2]) * scale, charts.color(int(k)), f"{name} {c:.2f}", 1)
        if paths is not None and i < len(paths):
            name = Path(paths[i]).name[:40]
            (nw, nh), _ = cv2.getTextSize(name, charts.FONT, 0.4, 1)
            cv2.rectangle(tile, (0, 0), (nw + 8, nh + 8), (40, 40, 40), -1)
            charts.text(tile, name, (4, 4), 0.4, (255, 255, 255), 1, valign="top")
        r, c = divmod(i, ns)
        mosaic[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile
        cv2.rectangle(mosaic, (c * tw, r * th), ((c + 1) * tw - 1, (r + 1) * th - 1), (255, 255, 255), 2)
    charts.save_png(mosaic, path)
    return mosaic
