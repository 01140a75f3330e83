"""Small cv2 plotting primitives (no matplotlib): line chart, bar chart, histogram, heatmap.

Each function returns a BGR uint8 image and, when ``path`` is given, also writes it as a PNG.
Layout is fixed-size and deliberately plain: white background, grey grid, "nice" tick values,
a colour-blind-friendly palette and anti-aliased text so charts read at a glance.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK, GRID, AXIS = (255, 255, 255), (0, 0, 0), (225, 225, 225), (90, 90, 90)
# Okabe-Ito palette (BGR) then a few extras: distinguishable for most colour-vision types
PALETTE = [(178, 114, 0), (0, 94, 213), (115, 158, 0), (167, 121, 204), (233, 180, 86),
           (66, 228, 240), (0, 159, 230), (60, 60, 60), (40, 40, 200), (200, 40, 40)]
Color = tuple[int, int, int]


def color(i: int) -> Color:
    """The i-th palette colour (cycles)."""
    return PALETTE[i % len(PALETTE)]


def save_png(img: np.ndarray, path: str | Path) -> Path:
    """Write img as PNG, creating parent folders; raises if cv2 cannot write it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: cv2 could not write the image")
    return path


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About n round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + step * 1e-6:
        ticks.append(round(t, 10))
        t += step
    return ticks


def fmt_num(v: float) -> str:
    """Short tick label: integers without decimals, others with up to 3 significant digits."""
    if abs(v - round(v)) < 1e-9 and abs(v) < 1e6:
        return str(int(round(v)))
    return f"{v:.3g}"


def text(img: np.ndarray, s: str, org: tuple[int, int], scale: float = 0.45, col: Color = BLACK,
         thick: int = 1, align: str = "left", valign: str = "bottom") -> tuple[int, int]:
    """Draw text anchored at org with horizontal (left/center/right) and vertical (top/center/bottom)
    alignment; returns the text size."""
    (w, h), _ = cv2.getTextSize(s, FONT, scale, thick)
    x, y = org
    x -= {"left": 0, "center": w // 2, "right": w}[align]
    y += {"bottom": 0, "center": h // 2, "top": h}[valign]
    cv2.putText(img, s, (int(x), int(y)), FONT, scale, col, thick, cv2.LINE_AA)
    return w, h


def _vertical_text(img: np.ndarray, s: str, center: tuple[int, int], scale: float = 0.5) -> None:
    """Text rotated 90 deg counter-clockwise (for y-axis labels), centred on center."""
    (w, h), base = cv2.getTextSize(s, FONT, scale, 1)
    tile = np.full((h + base + 4, w + 4, 3), 255, np.uint8)
    cv2.putText(tile, s, (2, h + 2), FONT, scale, BLACK, 1, cv2.LINE_AA)
    tile = cv2.rotate(tile, cv2.ROTATE_90_COUNTERCLOCKWISE)
    th, tw = tile.shape[:2]
    x0, y0 = center[0] - tw // 2, center[1] - th // 2
    x0, y0 = max(x0, 0), max(y0, 0)
    th, tw = min(th, img.shape[0] - y0), min(tw, img.shape[1] - x0)
    img[y0:y0 + th, x0:x0 + tw] = np.minimum(img[y0:y0 + th, x0:x0 + tw], tile[:th, :tw])


class _Axes:
    """Maps data coordinates to pixels inside a plot rectangle and draws frame, grid and ticks."""

    def __init__(self, img: np.ndarray, xlim: tuple[float, float], ylim: tuple[float, float],
                 margin: tuple[int, int, int, int] = (70, 40, 30, 55)):
        self.img = img
        H, W = img.shape[:2]
        left, top, right, bottom = margin
        self.x0, self.y0, self.x1, self.y1 = left, top, W - right, H - bottom
        self.xlim, self.ylim = xlim, ylim

    def px(self, x: float | np.ndarray, y: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (a, b), (c, d) = self.xlim, self.ylim
        u = self.x0 + (np.asarray(x, float) - a) / max(b - a, 1e-12) * (self.x1 - self.x0)
        v = self.y1 - (np.asarray(y, float) - c) / max(d - c, 1e-12) * (self.y1 - self.y0)
        return u, v

    def frame(self, xticks: Sequence[float] | None, yticks: Sequence[float] | None,
              xlabels: Sequence[str] | None = None, grid: bool = True) -> None:
        img = self.img
        for i, t in enumerate(xticks or []):
            u = int(round(float(self.px(t, self.ylim[0])[0])))
            if grid:
                cv2.line(img, (u, self.y0), (u, self.y1), GRID, 1)
            cv2.line(img, (u, self.y1), (u, self.y1 + 4), AXIS, 1)
            text(img, xlabels[i] if xlabels else fmt_num(t), (u, self.y1 + 8), 0.4, AXIS, align="center", valign="top")
        for t in yticks or []:
            v = int(round(float(self.px(self.xlim[0], t)[1])))
            if grid:
                cv2.line(img, (self.x0, v), (self.x1, v), GRID, 1)
            cv2.line(img, (self.x0 - 4, v), (self.x0, v), AXIS, 1)
            text(img, fmt_num(t), (self.x0 - 7, v), 0.4, AXIS, align="right", valign="center")
        cv2.rectangle(img, (self.x0, self.y0), (self.x1, self.y1), AXIS, 1)

    def labels(self, title: str, xlabel: str, ylabel: str) -> None:
        H = self.img.shape[0]
        if title:
            text(self.img, title, ((self.x0 + self.x1) // 2, 12), 0.6, BLACK, 1, "center", "top")
        if xlabel:
            text(self.img, xlabel, ((self.x0 + self.x1) // 2, H - 8), 0.5, BLACK, 1, "center", "bottom")
        if ylabel:
            _vertical_text(self.img, ylabel, (12, (self.y0 + self.y1) // 2))

    def legend(self, entries: Sequence[tuple[str, Color]], corner: str = "br") -> None:
        """Boxed legend inside the plot at corner tl/tr/bl/br."""
        if not entries:
            return
        scale, lh = 0.42, 18
        w = max(cv2.getTextSize(s, FONT, scale, 1)[0][0] for s, _ in entries) + 36
        h = lh * len(entries) + 8
        x = self.x1 - w - 8 if corner[1] == "r" else self.x0 + 8
        y = self.y1 - h - 8 if corner[0] == "b" else self.y0 + 8
        sub = self.img[y:y + h, x:x + w]
        sub[:] = (0.15 * sub + 0.85 * 255).astype(np.uint8)  # translucent white box
        cv2.rectangle(self.img, (x, y), (x + w, y + h), AXIS, 1)
        for i, (s, c) in enumerate(entries):
            yy = y + 4 + lh * i + lh // 2
            cv2.line(self.img, (x + 6, yy), (x + 26, yy), c, 3, cv2.LINE_AA)
            text(self.img, s, (x + 32, yy), scale, BLACK, valign="center")


def _canvas(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.full((h, w, 3), 255, np.uint8)


def _finish(img: np.ndarray, path: str | Path | None) -> np.ndarray:
    if path is not None:
        save_png(img, path)
    return img


def _limits(vals: np.ndarray, lim: tuple[float, float] | None, pad: float = 0.05) -> tuple[float, float]:
    if lim is not None:
        return float(lim[0]), float(lim[1])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    if hi == lo:
        return lo - 0.5, hi + 0.5
    return lo - pad * (hi - lo), hi + pad * (hi - lo)


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str = "",
               xlabel: str = "", ylabel: str = "", xlim: tuple[float, float] | None = None,
               ylim: tuple[float, float] | None = None, size: tuple[int, int] = (800, 560),
               colors: dict[str, Color] | None = None, thickness: dict[str, int] | None = None,
               legend: str = "br", legend_names: Sequence[str] | None = None,
               path: str | Path | None = None) -> np.ndarray:
    """Several named (x, y) series on shared axes; series named in ``thickness`` get that line width
    (e.g. a bold 'all classes' curve). legend: corner 'tl','tr','bl','br' or '' for none;
    legend_names limits the legend to those series (e.g. when there are dozens of classes)."""
    img = _canvas(size)
    xs = np.concatenate([np.asarray(x, float).ravel() for x, _ in series.values()] or [np.zeros(0)])
    ys = np.concatenate([np.asarray(y, float).ravel() for _, y in series.values()] or [np.zeros(0)])
    ax = _Axes(img, _limits(xs, xlim, 0.0), _limits(ys, ylim))
    xt = [t for t in nice_ticks(*ax.xlim) if ax.xlim[0] - 1e-9 <= t <= ax.xlim[1] + 1e-9]
    yt = [t for t in nice_ticks(*ax.ylim) if ax.ylim[0] - 1e-9 <= t <= ax.ylim[1] + 1e-9]
    ax.frame(xt, yt)
    entries = []
    for i, (name, (x, y)) in enumerate(series.items()):
        c = (colors or {}).get(name, color(i))
        u, v = ax.px(np.asarray(x, float), np.asarray(y, float))
        ok = np.isfinite(u) & np.isfinite(v)
        pts = np.stack([u[ok], v[ok]], 1).round().astype(np.int32)
        t = (thickness or {}).get(name, 2)
        cv2.rectangle(img, (ax.x0, ax.y0), (ax.x1, ax.y1), AXIS, 1)
        if len(pts) > 1:
            # clip to the plot box so out-of-range values do not scribble over labels
            mask = np.zeros(img.shape[:2], np.uint8)
            cv2.polylines(mask, [pts], False, 255, t, cv2.LINE_AA)
            mask[:ax.y0], mask[ax.y1 + 1:], mask[:, :ax.x0], mask[:, ax.x1 + 1:] = 0, 0, 0, 0
            a = (mask.astype(np.float32) / 255)[..., None]
            img[:] = (img * (1 - a) + np.array(c, np.float32) * a).astype(np.uint8)
        elif len(pts) == 1:
            cv2.circle(img, tuple(int(p) for p in pts[0]), 3, c, -1, cv2.LINE_AA)
        if legend_names is None or name in legend_names:
            entries.append((name, c))
    ax.labels(title, xlabel, ylabel)
    if legend:
        ax.legend(entries, legend)
    return _finish(img, path)


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str = "", xlabel: str = "",
              ylabel: str = "", size: tuple[int, int] = (800, 500), ylim: tuple[float, float] | None = None,
              annotate: bool = True, bar_color: Color | None = None,
              path: str | Path | None = None) -> np.ndarray:
    """One bar per label with its value written on top; long label lists are rotated/abbreviated."""
    vals = np.asarray(values, float)
    n = len(labels)
    img = _canvas(size)
    if ylim is not None:
        lo, hi = ylim
    else:
        lo, hi = min(0.0, float(vals.min(initial=0))), float(vals.max(initial=0)) * 1.12 or 1.0
    many = n > 12
    ax = _Axes(img, (0, max(n, 1)), (lo, hi), margin=(70, 40, 30, 100 if many else 55))
    ax.frame(None, [t for t in nice_ticks(lo, hi) if lo <= t <= hi])
    slot = (ax.x1 - ax.x0) / max(n, 1)
    for i, (lab, v) in enumerate(zip(labels, vals)):
        u0, _ = ax.px(i + 0.15, 0)
        u1, vv = ax.px(i + 0.85, v)
        _, vb = ax.px(0, max(lo, 0))
        c = bar_color or color(i if n <= len(PALETTE) else 0)
        cv2.rectangle(img, (int(u0), int(min(vv, vb))), (int(u1), int(max(vv, vb))), c, -1)
        uc = int((u0 + u1) / 2)
        if annotate and slot > 22:
            text(img, fmt_num(round(float(v), 3)), (uc, int(min(vv, vb)) - 3), 0.38, BLACK, align="center")
        s = lab if len(lab) <= max(int(slot / 7), 3) or many else lab[:max(int(slot / 7) - 1, 2)] + "."
        if many:  # vertical labels under the axis
            (tw, th), _ = cv2.getTextSize(s[:14], FONT, 0.38, 1)
            tile = np.full((th + 6, tw + 4, 3), 255, np.uint8)
            cv2.putText(tile, s[:14], (2, th + 2), FONT, 0.38, AXIS, 1, cv2.LINE_AA)
            tile = cv2.rotate(tile, cv2.ROTATE_90_COUNTERCLOCKWISE)
            y0, x0 = ax.y1 + 5, max(uc - tile.shape[1] // 2, 0)
            hh, ww = min(tile.shape[0], img.shape[0] - y0), min(tile.shape[1], img.shape[1] - x0)
            img[y0:y0 + hh, x0:x0 + ww] = np.minimum(img[y0:y0 + hh, x0:x0 + ww], tile[:hh, :ww])
        else:
            text(img, s, (uc, ax.y1 + 8), 0.4, AXIS, align="center", valign="top")
    ax.labels(title, xlabel, ylabel)
    return _finish(img, path)


def histogram(values: Sequence[float], bins: int | Sequence[float] = 40, title: str = "", xlabel: str = "",
              ylabel: str = "count", marks: dict[str, float] | None = None, log_x: bool = False,
              size: tuple[int, int] = (800, 500), path: str | Path | None = None) -> np.ndarray:
    """Histogram of values; ``marks`` {label: x} draws labelled vertical lines (e.g. bucket edges
    8/16/32 px). log_x bins and draws on a log10 axis (useful for box sizes spanning decades)."""
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v) & ((v > 0) if log_x else True)]
    f = np.log10 if log_x else (lambda a: np.asarray(a, float))
    if isinstance(bins, int):
        lo, hi = (float(f(v).min()), float(f(v).max())) if v.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1
        edges = np.linspace(lo, hi, bins + 1)
    else:
        edges = f(np.asarray(bins, float))
    counts, _ = np.histogram(f(v), edges)
    img = _canvas(size)
    top = float(counts.max(initial=0)) * 1.1 or 1.0
    ax = _Axes(img, (float(edges[0]), float(edges[-1])), (0, top))
    yt = [t for t in nice_ticks(0, top) if t <= top]
    if log_x:  # ticks at 1, 2, 5 x 10^k in data units
        dec = range(math.floor(edges[0]), math.ceil(edges[-1]) + 1)
        xt = [math.log10(m * 10 ** k) for k in dec for m in (1, 2, 5)]
        xt = [t for t in xt if edges[0] - 1e-9 <= t <= edges[-1] + 1e-9]
        ax.frame(xt, yt, [fmt_num(10 ** t) for t in xt])
    else:
        ax.frame([t for t in nice_ticks(edges[0], edges[-1]) if edges[0] <= t <= edges[-1]], yt)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c <= 0:
            continue
        u0, v0 = ax.px(a, c)
        u1, _ = ax.px(b, 0)
        cv2.rectangle(img, (int(u0) + 1, int(v0)), (max(int(u1) - 1, int(u0) + 1), ax.y1 - 1), color(0), -1)
    for i, (lab, x) in enumerate((marks or {}).items()):
        xx = float(f(x))
        if not edges[0] <= xx <= edges[-1]:
            continue
        u = int(ax.px(xx, 0)[0])
        for y in range(ax.y0, ax.y1, 10):  # dashed line
            cv2.line(img, (u, y), (u, min(y + 5, ax.y1)), PALETTE[1], 2)
        text(img, lab, (u + 4, ax.y0 + 6 + 16 * (i % 2)), 0.42, PALETTE[1], valign="top")
    ax.labels(title, xlabel, ylabel)
    return _finish(img, path)


def heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str = "",
            xlabel: str = "", ylabel: str = "", fmt: str = ".2f", cell: int | None = None,
            vmin: float | None = None, vmax: float | None = None, annotate: bool = True,
            path: str | Path | None = None) -> np.ndarray:
    """Matrix as coloured cells (white -> blue) with the value written in each cell and labels on
    rows (left) and columns (top, rotated when long). Zero cells are left blank to reduce clutter."""
    m = np.asarray(matrix, float)
    r, c = m.shape
    cell = cell or int(np.clip(560 / max(r, c), 18, 64))
    scale = float(np.clip(cell / 110, 0.28, 0.5))
    lw = max((cv2.getTextSize(s, FONT, 0.42, 1)[0][0] for s in row_labels), default=0) + 12
    ch = max((cv2.getTextSize(s, FONT, 0.42, 1)[0][0] for s in col_labels), default=0) + 12
    left, top = lw + 30, ch + 45
    tw = cv2.getTextSize(title, FONT, 0.6, 1)[0][0] if title else 0
    W, H = max(left + c * cell + 90, tw + 20), top + r * cell + 20
    img = np.full((H, W, 3), 255, np.uint8)
    lo = float(np.nanmin(m)) if vmin is None and m.size else (vmin or 0.0)
    hi = float(np.nanmax(m)) if vmax is None and m.size else (vmax if vmax is not None else 1.0)
    span = max(hi - lo, 1e-12)
    base, full = np.array([255, 255, 255], float), np.array([150, 70, 10], float)  # BGR white -> dark blue
    for i in range(r):
        for j in range(c):
            val = m[i, j]
            t = 0.0 if not np.isfinite(val) else float(np.clip((val - lo) / span, 0, 1))
            col = tuple(int(x) for x in base + (full - base) * t)
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), col, -1)
            if annotate and np.isfinite(val) and val != 0:
                txt = format(val, fmt)
                tc = WHITE if t > 0.55 else BLACK
                text(img, txt, (x0 + cell // 2, y0 + cell // 2), scale, tc, align="center", valign="center")
    for i in range(r + 1):
        cv2.line(img, (left, top + i * cell), (left + c * cell, top + i * cell), GRID, 1)
    for j in range(c + 1):
        cv2.line(img, (left + j * cell, top), (left + j * cell, top + r * cell), GRID, 1)
    cv2.rectangle(img, (left, top), (left + c * cell, top + r * cell), AXIS, 1)
    for i, s in enumerate(row_labels):
        text(img, s, (left - 6, top + i * cell + cell // 2), 0.42, BLACK, align="right", valign="center")
    for j, s in enumerate(col_labels):  # column labels rotated to stand above their column
        (tw, th), _ = cv2.getTextSize(s, FONT, 0.42, 1)
        tile = np.full((th + 6, tw + 4, 3), 255, np.uint8)
        cv2.putText(tile, s, (2, th + 2), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
        tile = cv2.rotate(tile, cv2.ROTATE_90_COUNTERCLOCKWISE)
        x0 = left + j * cell + cell // 2 - tile.shape[1] // 2
        y0 = top - 4 - tile.shape[0]
        img[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]] = np.minimum(
            img[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]], tile)
    # colour bar with min / max values
    bx = left + c * cell + 20
    for k in range(r * cell):
        t = 1 - k / max(r * cell - 1, 1)
        cv2.line(img, (bx, top + k), (bx + 14, top + k), tuple(int(x) for x in base + (full - base) * t), 1)
    cv2.rectangle(img, (bx, top), (bx + 14, top + r * cell), AXIS, 1)
    text(img, format(hi, fmt), (bx + 18, top), 0.38, AXIS, valign="top")
    text(img, format(lo, fmt), (bx + 18, top + r * cell), 0.38, AXIS)
    if title:
        text(img, title, (W // 2, 8), 0.6, BLACK, align="center", valign="top")
    if xlabel:
        text(img, xlabel, (left + c * cell // 2, 30), 0.48, AXIS, align="center", valign="top")
    if ylabel:
        _vertical_text(img, ylabel, (12, top + r * cell // 2), 0.48)
    return _finish(img, path)
