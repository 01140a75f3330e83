"""Native-resolution crops for training on images far larger than imgsz.

Resizing a 4000x2250 aerial photo to 640 px shrinks a 30 px car to 5 px. Instead, a training
sample can be an imgsz x imgsz window cut from the full-resolution image, placed around a
randomly chosen object (and sometimes anywhere, so that background is seen too). The object can be
drawn with per-box weights: `class_balance_weights` makes rare classes the centre of more windows
(hyp `tile_balance`), as repeat-factor sampling does for whole images (LVIS, Gupta et al. 2019).
"""
from __future__ import annotations

import numpy as np

from utils.augment.transforms import classify_kept
from utils.boxes import IGNORE_CLASS


def _axis_start(lo_box: float, hi_box: float, extent: int, size: int, rng: np.random.Generator) -> int:
    """Window start along one axis so that [start, start + size) holds the box when it fits, or
    lies inside it when it does not; clamped to the image."""
    if extent <= size:
        return 0
    lo, hi = hi_box - size, lo_box
    if lo > hi:  # box longer than the window: keep the window inside the box
        lo, hi = lo_box, hi_box - size
    lo, hi = int(np.clip(np.floor(lo), 0, extent - size)), int(np.clip(np.ceil(hi), 0, extent - size))
    return int(rng.integers(lo, hi + 1)) if hi > lo else lo


def class_balance_weights(classes: np.ndarray, class_counts: np.ndarray, power: float) -> np.ndarray:
    """Weight of each box as a window centre: count(its class) ** -power. power 0 draws every box
    alike (a class is chosen in proportion to its boxes); 1 draws every class alike; 0.5 between."""
    return np.maximum(class_counts[classes.astype(np.int64)], 1).astype(np.float64) ** -power


def tile_window(shape_hw: tuple[int, int], boxes_xyxy: np.ndarray, size: int, rng: np.random.Generator,
                background: float = 0.1, weights: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a size x size window (smaller where the image is) inside an image of
    shape (h, w). Around a random box (drawn in proportion to `weights`, else uniformly) with
    probability 1 - background, else anywhere."""
    h, w = shape_hw
    if len(boxes_xyxy) and rng.random() >= background:
        n = len(boxes_xyxy)
        k = int(rng.integers(n)) if weights is None else int(rng.choice(n, p=weights / weights.sum()))
        x1, y1, x2, y2 = boxes_xyxy[k]
        x0 = _axis_start(x1, x2, w, size, rng)
        y0 = _axis_start(y1, y2, h, size, rng)
    else:
        x0 = int(rng.integers(0, w - size + 1)) if w > size else 0
        y0 = int(rng.integers(0, h - size + 1)) if h > size else 0
    return x0, y0, min(x0 + size, w), min(y0 + size, h)


def crop_boxes(boxes: np.ndarray, window: tuple[int, int, int, int], min_box_px: float = 1.0,
               area_thr: float = 0.1) -> tuple[np.ndarray, int, int]:
    """Boxes [cls, x1, y1, x2, y2] moved into the window's frame and clipped. Boxes outside the
    window are left out silently (they are not lost: other tiles hold them); boxes the window
    edge cuts to <= area_thr of their area are dropped and counted as cut, those smaller than
    min_box_px as small. Returns (boxes, dropped_small, dropped_cut)."""
    x0, y0, x1, y1 = window
    if len(boxes) == 0:
        return boxes.reshape(0, 5).astype(np.float32), 0, 0
    inside = (boxes[:, 1] < x1) & (boxes[:, 3] > x0) & (boxes[:, 2] < y1) & (boxes[:, 4] > y0)
    b = boxes[inside].astype(np.float32)
    new = b[:, 1:5] - np.array([x0, y0, x0, y0], np.float32)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, x1 - x0)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, y1 - y0)
    keep, small, cut = classify_kept(new, b[:, 3:5] - b[:, 1:3], 1.0, min_box_px, area_thr,
                                     ignore=b[:, 0] == IGNORE_CLASS)
    return np.concatenate((b[keep, :1], new[keep]), 1), small, cut
