"""Autoanchor: check how well the model's anchors fit the training boxes; refit if poor.

A box "fits" an anchor when neither side differs by more than a factor ``thr`` (the
assigner's anchor_t). Best possible recall (BPR) is the share of boxes that fit at least
one anchor. Below ``min_bpr`` the anchors are refit by k-means on the box sizes followed
by a seeded evolutionary search, and written into ``model.detect.anchors`` (a buffer, so
they are saved with the model's state dict).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

MIN_ANCHOR = 2.0  # px; smaller anchors only chase annotation noise on tiny objects


def dataset_box_wh(shapes: np.ndarray, boxes: list[np.ndarray], imgsz: int) -> np.ndarray:
    """Box sizes (n, 2) in training pixels: each image is resized so its long side is imgsz.

    ``shapes`` (N, 2) original (h, w); ``boxes`` per image (n_i, 5) [cls, x1, y1, x2, y2]
    in original pixels. Zero-size boxes are dropped.
    """
    shapes = np.asarray(shapes, dtype=np.float64).reshape(-1, 2)
    if len(shapes) != len(boxes):
        raise ValueError(f"{len(shapes)} image shapes but {len(boxes)} box arrays")
    out = []
    for (h, w), b in zip(shapes, boxes):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 5)
        out.append((b[:, 3:5] - b[:, 1:3]) * (imgsz / max(h, w)))
    wh = np.concatenate(out) if out else np.zeros((0, 2))
    return wh[(wh > 0).all(1)].astype(np.float32)


def _ratio_fit(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(n, k) fit in (0, 1]: the worse of the two side ratios, as min(r, 1/r)."""
    r = wh[:, None, :] / anchors[None, :, :]
    return np.minimum(r, 1 / r).min(2)


def best_possible_recall(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0
                         ) -> tuple[float, float]:
    """(BPR, mean number of anchors that fit a box) for boxes ``wh`` and anchors (k, 2)."""
    if len(wh) == 0:
        return 1.0, 0.0
    x = _ratio_fit(np.asarray(wh, np.float64), np.asarray(anchors, np.float64).reshape(-1, 2))
    return float((x.max(1) > 1 / thr).mean()), float((x > 1 / thr).sum(1).mean())


def _fitness(log_wh: np.ndarray, anchors: np.ndarray, thr: float) -> float:
    """Mean fit of each box's best anchor, counting only boxes that fit at all.

    Works on log sizes: fit = min(r, 1/r) = exp(-|log w - log aw|), which is cheaper.
    """
    gap = np.abs(log_wh[:, None, :] - np.log(anchors)[None].astype(log_wh.dtype)).max(2).min(1)
    return float((np.exp(-gap) * (gap < np.log(thr))).mean())


def _kmeans(x: np.ndarray, n: int, rng: np.random.Generator, iters: int = 50) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, n):
        d2 = ((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(2).min(1)
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centres.append(x[rng.choice(len(x), p=p)])
    c = np.asarray(centres)
    for _ in range(iters):
        lab = ((x[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
        new = np.array([x[lab == i].mean(0) if (lab == i).any() else c[i] for i in range(n)])
        if np.allclose(new, c):
            break
        c = new
    return c


def kmean_anchors(wh: np.ndarray, n: int = 9, thr: float = 4.0, gen: int = 1000, seed: int = 0,
                  min_size: float = MIN_ANCHOR, max_samples: int = 30_000,
                  verbose: bool = True) -> np.ndarray:
    """Anchors (n, 2) fitted to box sizes ``wh`` (n_boxes, 2), sorted by area.

    k-means on log sizes, then ``gen`` rounds of multiplicative mutation that keep a
    mutant only when it raises the fit (mean best side-ratio over boxes that fit).
    Anchors never go below ``min_size`` px. Reproducible for a given ``seed``.
    """
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(1)]
    if len(wh) < n:
        raise ValueError(f"kmean_anchors: {len(wh)} boxes are too few for {n} anchors")
    rng = np.random.default_rng(seed)
    if len(wh) > max_samples:  # the fit is a mean; a sample estimates it well and is fast
        wh = wh[rng.choice(len(wh), max_samples, replace=False)]
    # boxes below min_size count as min_size; log sizes because the fit is a side *ratio*,
    # so log distances are the ones that matter and small boxes are not swamped by large
    # ones (as they are in Euclidean k-means)
    log_wh = np.log(np.maximum(wh, min_size))
    k = np.maximum(np.exp(_kmeans(log_wh, n, rng)), min_size)
    log_wh = log_wh.astype(np.float32)  # the search only compares fits: float32 is plenty
    f = _fitness(log_wh, k, thr)
    if verbose:
        print(f"autoanchor: k-means fit {f:.4f}, BPR {best_possible_recall(wh, k, thr)[0]:.4f}")
    mut_p, sigma = 0.9, 0.1
    for _ in range(gen):
        v = np.ones_like(k)
        while (v == 1).all():  # mutate at least one value
            v = ((rng.random(k.shape) < mut_p) * rng.random() * rng.standard_normal(k.shape)
                 * sigma + 1).clip(0.3, 3.0)
        kg = np.maximum(k * v, min_size)
        fg = _fitness(log_wh, kg, thr)
        if fg > f:
            f, k = fg, kg
    k = k[np.argsort(k.prod(1))]
    if verbose:
        bpr, aat = best_possible_recall(wh, k, thr)
        print(f"autoanchor: evolved fit {f:.4f}, BPR {bpr:.4f}, anchors/box {aat:.2f}, "
              f"anchors {np.round(k, 1).tolist()}")
    return k.astype(np.float32)


def check_anchors(wh: np.ndarray, model: nn.Module, thr: float, imgsz: int,
                  min_bpr: float = 0.98, gen: int = 1000, seed: int = 0,
                  min_size: float = MIN_ANCHOR, verbose: bool = True) -> bool:
    """Refit ``model.detect.anchors`` (pixels) to box sizes ``wh`` when BPR < ``min_bpr``.

    ``wh`` (n, 2) box sizes in training pixels at ``imgsz`` (see ``dataset_box_wh``).
    New anchors are sorted by area and handed to levels from the smallest stride up, and
    kept only if they raise BPR. Returns True when the anchors were changed.
    """
    m = getattr(model, "module", model)
    det = getattr(m, "detect", m)
    anchors = det.anchors.detach().cpu().numpy().reshape(-1, 2)
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(1)]
    bpr, aat = best_possible_recall(wh, anchors, thr)
    if verbose:
        print(f"autoanchor: {len(wh)} boxes at imgsz {imgsz}: BPR {bpr:.4f}, "
              f"anchors/box {aat:.2f} (thr {thr})")
    if bpr >= min_bpr or len(wh) < len(anchors):
        return False
    new = kmean_anchors(wh, len(anchors), thr, gen, seed, min_size, verbose=verbose)
    new = np.minimum(new, imgsz)  # an anchor larger than the image fits nothing better
    new_bpr, _ = best_possible_recall(wh, new, thr)
    if new_bpr <= bpr:
        if verbose:
            print(f"autoanchor: refit BPR {new_bpr:.4f} is no better; anchors kept")
        return False
    nl, na = det.anchors.shape[:2]
    order = torch.argsort(torch.as_tensor([float(s) for s in det.stride]))
    grouped = torch.from_numpy(new).view(nl, na, 2)
    with torch.no_grad():
        fresh = torch.empty_like(det.anchors)
        fresh[order] = grouped.to(fresh)  # smallest anchors to the smallest stride
        det.anchors.copy_(fresh)
    if verbose:
        print(f"autoanchor: anchors written to the model, BPR {bpr:.4f} -> {new_bpr:.4f}")
    return True
