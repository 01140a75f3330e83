"""labels.png for a training run: class counts, box size histogram with the size buckets, and
box width vs height. Drawn with cv2 (no plotting library)."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from utils.data.coco import SIZE_EDGES, SIZE_LABELS, size_buckets

W_PANEL, H_PANEL, MARGIN = 520, 460, 58
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLUE, ORANGE, GREY, DARK = (180, 110, 40), (40, 140, 240), (200, 200, 200), (40, 40, 40)


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float = 0.42, color=DARK, thick: int = 1,
          align: str = "left") -> None:
    (tw, th), _ = cv2.getTextSize(s, FONT, scale, thick)
    x = org[0] - tw if align == "right" else org[0] - tw // 2 if align == "center" else org[0]
    cv2.putText(img, s, (int(x), int(org[1])), FONT, scale, color, thick, cv2.LINE_AA)


def _class_panel(names: list[str], counts: np.ndarray) -> np.ndarray:
    p = np.full((H_PANEL, W_PANEL, 3), 255, np.uint8)
    _text(p, "instances per class", (W_PANEL // 2, 22), 0.55, align="center")
    n_show = min(len(names), 30)  # beyond 30 rows the labels become unreadable; the rest are summed
    order = np.argsort(-counts, kind="stable")[:n_show] if len(names) > n_show else np.arange(len(names))
    top, bottom, left, right = 40, H_PANEL - 30, 150, W_PANEL - 60
    row = (bottom - top) / max(n_show, 1)
    cmax = max(int(counts.max()) if len(counts) else 0, 1)
    for r, k in enumerate(order):
        y0 = int(top + r * row + row * 0.15)
        y1 = int(top + (r + 1) * row - row * 0.15)
        x1 = int(left + (right - left) * counts[k] / cmax)
        cv2.rectangle(p, (left, y0), (max(x1, left + 1), max(y1, y0 + 1)), BLUE, -1)
        yc = (y0 + y1) // 2 + 5
        _text(p, names[k][:20], (left - 6, yc), align="right")
        _text(p, str(int(counts[k])), (x1 + 5, yc))
    if len(names) > n_show:
        rest = int(counts.sum() - counts[order].sum())
        _text(p, f"+ {len(names) - n_show} more classes, {rest} boxes", (left, H_PANEL - 10))
    return p


def _size_panel(sides: np.ndarray, sides_train: np.ndarray | None, imgsz: int) -> np.ndarray:
    p = np.full((H_PANEL, W_PANEL, 3), 255, np.uint8)
    _text(p, "box size sqrt(w*h), px (log scale)", (W_PANEL // 2, 22), 0.55, align="center")
    left, right, top, bottom = MARGIN, W_PANEL - 20, 84, H_PANEL - MARGIN
    hi = max(1024.0, float(sides.max()) if len(sides) else 1.0)
    lo_l, hi_l = 0.0, math.log2(hi)
    edges = 2 ** np.arange(lo_l, hi_l + 0.25, 0.25)  # 4 bins per octave

    def xpix(v: float) -> int:
        return int(left + (right - left) * (math.log2(max(v, 1.0)) - lo_l) / (hi_l - lo_l))

    hists = [np.histogram(sides, edges)[0]]
    if sides_train is not None:
        hists.append(np.histogram(sides_train, edges)[0])
    hmax = max(max(int(h.max()) for h in hists), 1)
    for e in SIZE_EDGES:  # bucket boundaries
        x = xpix(e)
        for y in range(top, bottom, 8):
            cv2.line(p, (x, y), (x, min(y + 4, bottom)), GREY, 1)
    for h, col, fill in zip(hists, (BLUE, ORANGE), (True, False)):
        for k, c in enumerate(h):
            if c == 0:
                continue
            x0, x1 = xpix(edges[k]), xpix(edges[k + 1]) - 1
            y = int(bottom - (bottom - top) * c / hmax)
            cv2.rectangle(p, (x0, y), (x1, bottom), col, -1 if fill else 1)
    cv2.line(p, (left, bottom), (right, bottom), DARK, 1)
    cv2.line(p, (left, top), (left, bottom), DARK, 1)
    for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096):
        if v <= hi:
            _text(p, str(v), (xpix(v), bottom + 16), 0.38, align="center")
    _text(p, str(hmax), (left - 4, top + 4), 0.38, align="right")
    _text(p, "0", (left - 4, bottom), 0.38, align="right")
    # bucket names and counts above the plot
    bounds = [1.0, *SIZE_EDGES, hi]
    counts = size_buckets(sides)
    counts_train = size_buckets(sides_train) if sides_train is not None else None
    for k, (name, c) in enumerate(zip(SIZE_LABELS, counts)):
        xc = (xpix(bounds[k]) + xpix(bounds[k + 1])) // 2
        _text(p, name, (xc, 44), 0.4, align="center")
        _text(p, str(int(c)), (xc, 60), 0.4, BLUE, align="center")
        if counts_train is not None:
            _text(p, str(int(counts_train[k])), (xc, 76), 0.4, ORANGE, align="center")
    cv2.rectangle(p, (left + 8, bottom + 26), (left + 20, bottom + 36), BLUE, -1)
    _text(p, "original pixels", (left + 26, bottom + 36), 0.4)
    if sides_train is not None:
        cv2.rectangle(p, (left + 190, bottom + 26), (left + 202, bottom + 36), ORANGE, 1)
        _text(p, f"resized to imgsz {imgsz}", (left + 208, bottom + 36), 0.4)
    return p


def _wh_panel(wh: np.ndarray) -> np.ndarray:
    p = np.full((H_PANEL, W_PANEL, 3), 255, np.uint8)
    _text(p, "box width vs height, px (log-log)", (W_PANEL // 2, 22), 0.55, align="center")
    left, right, top, bottom = MARGIN, W_PANEL - 20, 40, H_PANEL - MARGIN
    hi_l = math.log2(max(1024.0, float(wh.max()) if len(wh) else 1.0))
    size = min(right - left, bottom - top)
    right, top = left + size, bottom - size
    if len(wh):
        lw = np.log2(np.maximum(wh, 1.0)) / hi_l
        xs = (left + lw[:, 0] * size).astype(np.int32)
        ys = (bottom - lw[:, 1] * size).astype(np.int32)
        density = np.zeros((H_PANEL, W_PANEL), np.float32)
        np.add.at(density, (ys.clip(0, H_PANEL - 1), xs.clip(0, W_PANEL - 1)), 1.0)
        density = cv2.GaussianBlur(density, (0, 0), 1.5)
        a = (density / (density.max() + 1e-9)) ** 0.4  # gamma: sparse points stay visible
        p[:] = (p * (1 - a[..., None]) + np.array(BLUE) * a[..., None]).astype(np.uint8)
    cv2.rectangle(p, (left, top), (right, bottom), DARK, 1)
    for v in (1, 4, 16, 64, 256, 1024, 4096):
        t = math.log2(v) / hi_l
        if t <= 1:
            _text(p, str(v), (int(left + t * size), bottom + 16), 0.38, align="center")
            _text(p, str(v), (left - 4, int(bottom - t * size) + 4), 0.38, align="right")
    _text(p, "width", ((left + right) // 2, bottom + 34), 0.42, align="center")
    _text(p, "height", (4, top - 6), 0.42)
    return p


def plot_labels(dataset, path: str) -> str:
    """Write one PNG summarising dataset.boxes ((n, 5) [cls, x1, y1, x2, y2] per image, original px),
    dataset.names and dataset.shapes; returns the path."""
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
    panels = np.hstack([_class_panel(names, counts), _size_panel(sides, sides_train, imgsz), _wh_panel(wh)])
    n_img = len(dataset.shapes)
    negatives = sum(len(b) == 0 for b in dataset.boxes)
    header = np.full((34, panels.shape[1], 3), 255, np.uint8)
    _text(header, f"{n_img} images ({negatives} without boxes), {len(allb)} boxes, {len(names)} classes"
                  f"   {getattr(dataset, 'json_path', '')}", (12, 24), 0.5)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.vstack([header, panels])):
        raise OSError(f"plot_labels: could not write {out}")
    return str(out)
