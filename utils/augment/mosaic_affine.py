"""Mosaic and random affine in one pass, without the (2*size)^2 canvas.

`mosaic4` followed by `random_affine` pastes four images on a (2*size)^2 grey canvas and warps it
to size^2: a 4.9 MB fill, four pastes and a bilinear warpAffine per sample, the largest share of
a training loader's time. The warp reads only the part of the canvas its output maps back to,
so `mosaic4_affine` builds that part alone; it draws the same random numbers in the same order
as `mosaic4` + `random_affine`, and:

- exact=True (or any rotation, shear or perspective): warpAffine with the same matrix over a
  canvas filled only where the warp reads: bit-identical to mosaic4 + random_affine.
- exact=False with an axis-aligned matrix (degrees = shear = perspective = 0, the default hyps):
  scale + translate is a resize of one window of the canvas. The scale is rounded so that the
  window is a whole number of pixels (1 / (size / scale) relative) and the translation to what the
  window's origin allows (< 1 px); boxes follow the rounded matrix, so they match the pixels
  exactly. cv2.resize is ~5x faster than warpAffine; pixel values differ from the warp's by its
  own rounding (fixed-point weights), the distribution of every draw by < 0.2%.
"""
from __future__ import annotations

import cv2
import numpy as np

from utils.augment.transforms import PAD_VALUE, affine_boxes, affine_matrix, classify_kept
from utils.boxes import IGNORE_CLASS

_CANVAS: dict[tuple, np.ndarray] = {}  # reused canvases and resize windows, by shape


def _buffer(hw: tuple[int, int], channels: tuple[int, ...]) -> np.ndarray:
    """A reused uint8 buffer of shape hw + channels ((), grey, or (3,))."""
    shape = (*hw, *channels)
    buf = _CANVAS.get(shape)
    if buf is None:
        buf = _CANVAS[shape] = np.empty(shape, np.uint8)
    return buf


def _placements(shapes: list[tuple[int, int]], xc: int, yc: int) -> list[tuple[int, int]]:
    """Top-left corner on the canvas of each image, its corner at the centre (as mosaic4 places them)."""
    return [(xc - w if k in (0, 2) else xc, yc - h if k in (0, 1) else yc) for k, (h, w) in enumerate(shapes)]


def _mosaic_boxes(boxes: list[np.ndarray], places: list[tuple[int, int]], shapes: list, s2: int) -> np.ndarray:
    """Boxes on the canvas, clipped to it, as mosaic4 makes them (in a few array operations)."""
    parts, shift = [], []
    for (x1, y1), (h, w), b in zip(places, shapes, boxes):
        if min(x1 + w, s2) <= max(x1, 0) or min(y1 + h, s2) <= max(y1, 0) or not len(b):
            continue  # mosaic4 skips images wholly off the canvas
        parts.append(b)
        shift.append(np.broadcast_to(np.array([x1, y1, x1, y1], np.float32), (len(b), 4)))
    if not parts:
        return np.zeros((0, 5), np.float32)
    allb = np.concatenate(parts).astype(np.float32)
    allb[:, 1:5] += np.concatenate(shift)
    np.clip(allb[:, 1:5], 0, s2, out=allb[:, 1:5])
    return allb


def _axis_boxes(allb: np.ndarray, M: np.ndarray, gain: float, size: int, min_box_px: float,
                area_thr: float) -> tuple[np.ndarray, tuple[int, int]]:
    """affine_boxes for an axis-aligned M with positive scales: x * s + t, clipped, filtered."""
    if not len(allb):
        return np.zeros((0, 5), np.float32), (0, 0)
    sx, sy, tx, ty = M[0, 0], M[1, 1], M[0, 2], M[1, 2]
    new = allb[:, 1:5].astype(np.float64) * (sx, sy, sx, sy) + (tx, ty, tx, ty)
    new = np.clip(new, 0, size).astype(np.float32)
    keep, small, cut = classify_kept(new, allb[:, 3:5] - allb[:, 1:3], gain, min_box_px, area_thr,
                                     ignore=allb[:, 0] == IGNORE_CLASS)
    return np.concatenate((allb[keep, :1], new[keep]), 1).astype(np.float32), (small, cut)


def _paint(dst: np.ndarray, x0: int, y0: int, images: list[np.ndarray], places: list[tuple[int, int]],
           s2: int, xc: int, yc: int) -> None:
    """Fill dst, the canvas window whose top-left is (x0, y0), as mosaic4's canvas is there: image k
    (clipped to the canvas) in quadrant k around the centre (xc, yc), grey around it. Each pixel
    is written once: the grey goes only where no image lands."""
    dh, dw = dst.shape[:2]
    for k, (im, (x1, y1)) in enumerate(zip(images, places)):
        qx1, qx2 = (x0, min(xc, x0 + dw)) if k in (0, 2) else (max(xc, x0), x0 + dw)
        qy1, qy2 = (y0, min(yc, y0 + dh)) if k in (0, 1) else (max(yc, y0), y0 + dh)
        if qx2 <= qx1 or qy2 <= qy1:
            continue  # this quadrant lies outside the window
        h, w = im.shape[:2]
        ax1, ay1 = max(x1, 0, qx1), max(y1, 0, qy1)
        ax2, ay2 = min(x1 + w, s2, qx2), min(y1 + h, s2, qy2)
        qx1, qx2, qy1, qy2 = qx1 - x0, qx2 - x0, qy1 - y0, qy2 - y0  # window coordinates from here
        if ax2 <= ax1 or ay2 <= ay1:
            dst[qy1:qy2, qx1:qx2] = PAD_VALUE
            continue
        dst[ay1 - y0:ay2 - y0, ax1 - x0:ax2 - x0] = im[ay1 - y1:ay2 - y1, ax1 - x1:ax2 - x1]
        ax1, ax2, ay1, ay2 = ax1 - x0, ax2 - x0, ay1 - y0, ay2 - y0
        dst[qy1:ay1, qx1:qx2] = PAD_VALUE  # the quadrant's strips around the image: above, below, left, right
        dst[ay2:qy2, qx1:qx2] = PAD_VALUE
        dst[ay1:ay2, qx1:ax1] = PAD_VALUE
        dst[ay1:ay2, ax2:qx2] = PAD_VALUE


def _read_window(M: np.ndarray, out_wh: tuple[int, int], s2: int) -> tuple[int, int, int, int]:
    """Canvas pixels (x0, y0, x1, y1), end exclusive, that a bilinear warp by M to out_wh can read:
    the back-projected output corners, widened by 2 px for the interpolation's neighbours."""
    ow, oh = out_wh
    inv = np.linalg.inv(M)
    pts = np.array([[0, 0, 1], [ow - 1, 0, 1], [0, oh - 1, 1], [ow - 1, oh - 1, 1]], float) @ inv.T
    xy = pts[:, :2] / pts[:, 2:3]
    x0, y0 = (int(np.clip(np.floor(v) - 2, 0, s2)) for v in xy.min(0))
    x1, y1 = (int(np.clip(np.ceil(v) + 3, 0, s2)) for v in xy.max(0))
    return x0, y0, x1, y1


def mosaic4_affine(images: list[np.ndarray], boxes: list[np.ndarray], size: int, rng: np.random.Generator,
                   degrees: float = 0.0, translate: float = 0.0, scale: float = 0.0, shear: float = 0.0,
                   perspective: float = 0.0, min_box_px: float = 1.0, area_thr: float = 0.1,
                   exact: bool = False) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """mosaic4(images, boxes, size, rng) then random_affine(..., out_shape=size, ...): the same draws,
    the same (img, boxes, (dropped_small, dropped_cut)); see the module docstring for `exact`.
    images: all BGR (h, w, 3) or all grey (h, w); the output has their channels."""
    s2 = 2 * size
    xc, yc = (int(v) for v in rng.uniform(size * 0.5, size * 1.5, 2))
    shapes = [im.shape[:2] for im in images]
    places = _placements(shapes, xc, yc)
    allb = _mosaic_boxes(boxes, places, shapes, s2)
    M, gain = affine_matrix((s2, s2), (size, size), rng, degrees, translate, scale, shear, perspective)
    axis_aligned = M[0, 1] == 0 and M[1, 0] == 0 and not M[2, :2].any() and M[0, 0] > 0 and M[1, 1] > 0
    if axis_aligned and not exact:
        img, M, gain = _resize_window(images, places, M, size, s2, xc, yc)
        out, dropped = _axis_boxes(allb, M, gain, size, min_box_px, area_thr)
        return img, out, dropped
    else:
        x0, y0, x1, y1 = _read_window(M, (size, size), s2) if not perspective else (0, 0, s2, s2)
        canvas = _buffer((s2, s2), images[0].shape[2:])
        if x1 > x0 and y1 > y0:
            _paint(canvas[y0:y1, x0:x1], x0, y0, images, places, s2, xc, yc)
        warp = cv2.warpPerspective if perspective else cv2.warpAffine
        img = warp(canvas, M if perspective else M[:2], (size, size), borderValue=(PAD_VALUE,) * 3)
    out, dropped = affine_boxes(allb, M, gain, (size, size), min_box_px, area_thr)
    return img, out, dropped


def _resize_window(images: list[np.ndarray], places: list[tuple[int, int]], M: np.ndarray, size: int,
                   s2: int, xc: int, yc: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The axis-aligned warp as a resize: output pixel x samples canvas a + (x + 0.5) * W / size - 0.5
    (cv2.resize's convention), which is M's x -> (x - tx) / s when W = size / s and
    a = -(tx + 0.5) / s + 0.5; W and a are rounded to whole pixels and M to match them."""
    M = M.copy()
    win = []
    for ax in (0, 1):
        s, t = M[ax, ax], M[ax, 2]
        n = max(int(round(size / s)), 1)  # window pixels along this axis
        s = size / n
        a = int(round(-(t + 0.5) / s + 0.5))
        M[ax, ax], M[ax, 2] = s, -s * (a - 0.5) - 0.5
        win.append((a, n))
    (ax0, w), (ay0, h) = win
    # the window is at most 2 * size + 1 px wide: one reused buffer, no page faults
    buf = _buffer((2 * size + 2, 2 * size + 2), images[0].shape[2:])
    patch = buf[:h, :w] if h <= len(buf) and w <= len(buf) else np.empty((h, w, *images[0].shape[2:]), np.uint8)
    _paint(patch, ax0, ay0, images, places, s2, xc, yc)  # parts of the window off the canvas stay grey: warp's border
    if (w, h) == (size, size):
        img = patch.copy()
    else:
        img = cv2.resize(patch, (size, size), interpolation=cv2.INTER_LINEAR)
    return img, M, float(np.sqrt(M[0, 0] * M[1, 1]))
