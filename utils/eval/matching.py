"""COCO-style matching and accumulation in numpy, for the fast in-memory evaluator.

Mirrors COCOeval.evaluateImg (greedy matching by score, in-range ground truth preferred, unmatched
out-of-range detections ignored, top 100 per image and class) and COCOeval.accumulate
(precision envelope sampled at 101 recall points), without per-detection Python loops.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torchvision

IOU_THRS = np.linspace(0.5, 0.95, 10)
REC_THRS = np.linspace(0.0, 1.0, 101)
ALL_AREAS = (0.0, 1e5 ** 2)


def match_image(det: np.ndarray, gt: np.ndarray, iou_thrs: np.ndarray = IOU_THRS,
                area_rngs: Sequence[tuple[float, float]] = (ALL_AREAS,), max_det: int = 100,
                use_cats: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Match one image's detections (n,6) [x1,y1,x2,y2,conf,cls] to ground truth (m,5)
    [cls,x1,y1,x2,y2] at every IoU threshold and area range.

    Returns (keep (n,) bool: the top max_det per class by conf, as COCO),
    tp (A, T, n) bool, ignored (A, T, n) bool, gt_counted (A, m) bool (gt inside the range).
    Matching per threshold follows COCOeval.evaluateImg (see _match)."""
    n, m, A, T = len(det), len(gt), len(area_rngs), len(iou_thrs)
    keep = np.zeros(n, bool)
    if n:
        cls = det[:, 5] if use_cats else np.zeros(n)
        order = np.lexsort((-det[:, 4], cls))  # by class, conf descending within
        rank = np.empty(n, int)
        sc = cls[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sc)) + 1]
        rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        keep = rank < max_det
    tp = np.zeros((A, T, n), bool)
    ign = np.zeros((A, T, n), bool)
    g_area = (gt[:, 3] - gt[:, 1]) * (gt[:, 4] - gt[:, 2]) if m else np.zeros(0)
    d_area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1]) if n else np.zeros(0)
    counted = np.stack([(g_area >= lo) & (g_area <= hi) for lo, hi in area_rngs]) if m else np.zeros((A, 0), bool)
    if n and m:
        d, g, v = _candidates(det, gt, keep, min(float(np.min(iou_thrs)), 1 - 1e-10), use_cats)
        for a in range(A):
            for ti, t in enumerate(iou_thrs):
                sel = v >= min(t, 1 - 1e-10)
                mg = _match(d[sel], g[sel], v[sel], det[:, 4], counted[a], m)
                hit = mg >= 0
                tp[a, ti] = hit & counted[a][np.maximum(mg, 0)]
                ign[a, ti] = hit & ~counted[a][np.maximum(mg, 0)]
    for a, (lo, hi) in enumerate(area_rngs):  # unmatched detections outside the range are ignored
        out_rng = (d_area < lo) | (d_area > hi)
        ign[a] |= ~tp[a] & ~ign[a] & out_rng[None]
    return keep, tp, ign, counted


CHUNK = 256  # detections per IoU block: a block of 256 x 10,000 ground-truth boxes is 20 MB


def _candidates(det: np.ndarray, gt: np.ndarray, keep: np.ndarray, thr: float,
                use_cats: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(detection, gt, IoU) of every pair that may match at IoU >= thr (kept detections, same class), in
    row-major order. Computed in blocks of detections: a dense image never holds its whole IoU matrix, and the
    matching then works on these pairs alone (a small box overlaps a few others, not all 10,000)."""
    kd = np.flatnonzero(keep)
    g_boxes = torch.from_numpy(gt[:, 1:5]).double()
    ds, gs, vs = [], [], []
    for i in range(0, len(kd), CHUNK):
        rows = kd[i:i + CHUNK]
        iou = torchvision.ops.box_iou(torch.from_numpy(det[rows, :4]).double(), g_boxes).numpy()
        if use_cats:
            iou = np.where(det[rows, 5:6] == gt[None, :, 0], iou, 0.0)
        r, c = np.nonzero(iou >= thr)
        ds.append(rows[r])
        gs.append(c)
        vs.append(iou[r, c])
    if not ds:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    return np.concatenate(ds), np.concatenate(gs), np.concatenate(vs)


def _match(d: np.ndarray, g: np.ndarray, v: np.ndarray, conf: np.ndarray, gt_ok: np.ndarray, m: int) -> np.ndarray:
    """Matched gt index per detection (-1 if none) at one IoU threshold, from the pairs (d, g) with IoU v over
    it (row-major order): the result of COCO's greedy loop (detections by score; each takes its best free gt,
    in-range gts first, then IoU), computed in rounds. A detection is settled once it is the best-ranked
    unsettled detection among all that could take its preferred gt; settled pairs leave and the next round
    starts."""
    n = len(conf)
    mg = np.full(n, -1)
    if not len(d):
        return mg
    rank = np.empty(n, int)
    rank[np.argsort(-conf, kind="mergesort")] = np.arange(n)
    prio = np.lexsort((-v, ~gt_ok[g], d))  # per detection: in-range gt first, then IoU
    d, g = d[prio], g[prio]
    while len(d):
        first = np.r_[True, d[1:] != d[:-1]]
        bd, bg = d[first], g[first]                 # each live detection's preferred gt
        best_rank = np.full(m, n)
        np.minimum.at(best_rank, g, rank[d])        # best-ranked live detection wanting each gt
        ok = rank[bd] == best_rank[bg]
        mg[bd[ok]] = bg[ok]
        done_d = np.zeros(n, bool)
        done_g = np.zeros(m, bool)
        done_d[bd[ok]], done_g[bg[ok]] = True, True
        alive = ~done_d[d] & ~done_g[g]
        d, g = d[alive], g[alive]
    return mg


def accumulate(conf: np.ndarray, tp: np.ndarray, ign: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """COCO accumulate for one class and area range: conf (n,), tp/ign (T, n), n_gt counted gts.
    Returns (precision at REC_THRS (T, 101), recall (T,)); -1 when n_gt == 0 (undefined)."""
    T = tp.shape[0]
    if n_gt == 0:
        return -np.ones((T, len(REC_THRS))), -np.ones(T)
    o = np.argsort(-conf, kind="mergesort")
    tp, ign = tp[:, o], ign[:, o]
    tps = np.cumsum(tp & ~ign, 1, dtype=np.float64)
    fps = np.cumsum(~tp & ~ign, 1, dtype=np.float64)
    q = np.zeros((T, len(REC_THRS)))
    rec_out = np.zeros(T)
    for t in range(T):  # COCO keeps ignored entries in the arrays (they repeat the last value)
        nd = tps.shape[1]
        if nd == 0:
            continue
        rc = tps[t] / n_gt
        pr = tps[t] / (fps[t] + tps[t] + np.spacing(1))
        rec_out[t] = rc[-1]
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope
        idx = np.searchsorted(rc, REC_THRS, side="left")
        ok = idx < nd
        q[t, ok] = pr[idx[ok]]
    return q, rec_out
