"""Detection metrics.

- ``coco_eval`` (utils/eval/coco.py, re-exported here): the reference figures, computed by pycocotools'
  COCOeval on COCO results under an evaluation protocol (utils/eval/protocols.py).
- ``DetectionStats``: an in-memory, vectorised COCO-style evaluator (101-point interpolated AP
  at IoU .50:.95, per class, per area range) used every epoch, plus the precision / recall /
  F1-vs-confidence curves both paths report. It approximates COCOeval: detections are matched
  to ground truth with COCO's greedy rule (computed in vectorised rounds), but ground truth comes
  from the loader (boxes the dataset dropped, crowd flags and json 'area' fields are not seen).
- ``ConfusionMatrix``: YOLOv5-style (nc + 1)^2 counts with a background row/column.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torchvision

from utils.eval.coco import coco_eval, load_gt, mean_valid
from utils.eval.matching import IOU_THRS, REC_THRS, accumulate, match_image
from utils.eval.protocols import AP_KEY, AR_KEY, AREA_RANGES, BUCKETS

__all__ = ["AREA_RANGES", "ConfusionMatrix", "DetectionStats", "coco_eval", "load_gt"]


def _np(x: Any, cols: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, np.float64)
    return x.reshape(-1, cols) if x.size else np.zeros((0, cols))


class DetectionStats:
    """Collects per-image matches and computes COCO-style figures in memory.

    update(det (n,6) [x1,y1,x2,y2,conf,cls], gt (m,5) [cls,x1,y1,x2,y2], image_id) per image
    (same pixel space for both, normally original-image pixels); compute() -> figures."""

    def __init__(self, nc: int, areas: Sequence[str] = ("all",), use_cats: bool = True, max_det: int = 100):
        if areas[0] != "all":
            raise ValueError("DetectionStats: the first area range must be 'all'")
        self.nc, self.areas, self.use_cats, self.max_det = nc, list(areas), use_cats, max_det
        self.rngs = [BUCKETS[a] for a in self.areas]
        self.records: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, det: Any, gt: Any, image_id: int) -> None:
        det, gt = _np(det, 6), _np(gt, 5)
        keep, tp, ign, counted = match_image(det, gt, IOU_THRS, self.rngs, self.max_det, self.use_cats)
        o = np.argsort(-det[keep, 4], kind="mergesort") if len(det) else np.zeros(0, int)
        self.records.append((int(image_id), det[keep][o][:, 4:6], tp[:, :, keep][:, :, o],
                             ign[:, :, keep][:, :, o], gt[:, 0].copy(), counted))

    def compute(self) -> dict[str, Any]:
        if not self.records:
            raise ValueError("DetectionStats.compute: no images were evaluated")
        recs = sorted(self.records, key=lambda r: r[0])  # COCO concatenates in image-id order
        cd = np.concatenate([r[1] for r in recs])
        conf = cd[:, 0]
        cls = cd[:, 1] if self.use_cats else np.zeros(len(cd))
        tp = np.concatenate([r[2] for r in recs], 2)
        ign = np.concatenate([r[3] for r in recs], 2)
        gcls = np.concatenate([r[4] for r in recs]) if self.use_cats else np.concatenate(
            [np.zeros(len(r[4])) for r in recs])
        counted = np.concatenate([r[5] for r in recs], 1)
        K = self.nc if self.use_cats else 1
        T, A = len(IOU_THRS), len(self.areas)
        prec = -np.ones((T, len(REC_THRS), K, A))
        rec = -np.ones((T, K, A))
        for k in range(K):
            sel = cls == k
            for a in range(A):
                n_gt = int((counted[a] & (gcls == k)).sum())
                prec[:, :, k, a], rec[:, k, a] = accumulate(conf[sel], tp[a][:, sel], ign[a][:, sel], n_gt)
        out: dict[str, Any] = {}
        for a, name in enumerate(self.areas):
            out[AP_KEY[name]] = mean_valid(prec[:, :, :, a])
            out[AR_KEY.get(name, f"AR{self.max_det}")] = mean_valid(rec[:, :, a])  # 'all': AR100 at max_det 100
        out["AP50"], out["AP75"] = mean_valid(prec[0, :, :, 0]), mean_valid(prec[5, :, :, 0])
        curves = self._curves(conf, cls, tp[0][0], gcls)
        nimg = np.zeros(K, int)
        for r in recs:  # images that contain each class
            present = np.unique(r[4]).astype(int) if self.use_cats else np.zeros(min(len(r[4]), 1), int)
            nimg[present] += 1
        n_inst = np.bincount(gcls.astype(int), minlength=K)[:K]
        i = curves["best"]
        out["precision"], out["recall"] = curves["mp"], curves["mr"]
        out["per_class"] = [{"class": k, "images": int(nimg[k]), "instances": int(n_inst[k]),
                             "P": float(curves["p"][k, i]), "R": float(curves["r"][k, i]),
                             "AP50": mean_valid(prec[0, :, k, 0]), "AP": mean_valid(prec[:, :, k, 0])}
                            for k in range(K)]
        out["images"], out["instances"] = len(recs), int(len(gcls))
        out["curves"] = curves
        out["pr50"] = {k: prec[0, :, k, 0] for k in range(K)}
        return out

    def _curves(self, conf: np.ndarray, cls: np.ndarray, tp50: np.ndarray, gcls: np.ndarray) -> dict[str, Any]:
        """Precision, recall and F1 against confidence threshold (IoU .5), per class; P and R are
        reported where the class-mean F1 peaks (YOLOv5's convention)."""
        K = self.nc if self.use_cats else 1
        px = np.linspace(0, 1, 1001)
        p, r = np.ones((K, len(px))), np.zeros((K, len(px)))
        has_gt = np.zeros(K, bool)
        for k in range(K):
            n_gt = int((gcls == k).sum())
            has_gt[k] = n_gt > 0
            sel = cls == k
            c, t = conf[sel], tp50[sel]
            if not len(c):  # never predicted: report precision 0 (not the empty-set convention 1)
                p[k] = 0.0
                continue
            o = np.argsort(-c, kind="mergesort")
            c, t = c[o], t[o]
            tpc = np.cumsum(t)
            nd = np.searchsorted(-c, -px, side="right")  # detections with conf >= threshold
            ok = nd > 0
            r[k, ok] = tpc[nd[ok] - 1] / max(n_gt, 1)
            p[k, ok] = tpc[nd[ok] - 1] / nd[ok]
        f1 = 2 * p * r / (p + r + 1e-16)
        mf1 = f1[has_gt].mean(0) if has_gt.any() else np.zeros(len(px))
        best = int(np.argmax(mf1))
        mp = float(p[has_gt, best].mean()) if has_gt.any() else 0.0
        mr = float(r[has_gt, best].mean()) if has_gt.any() else 0.0
        return {"px": px, "p": p, "r": r, "f1": f1, "has_gt": has_gt, "best": best, "mp": mp, "mr": mr,
                "best_conf": float(px[best])}


class ConfusionMatrix:
    """(nc + 1) x (nc + 1) counts, rows = predicted class, columns = true class; the last row and
    column are background (missed objects / false detections). Detections below conf are
    dropped; a detection and a gt pair up (any class) when IoU > iou_thres, greedily by IoU."""

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45):
        self.nc, self.conf, self.iou_thres = nc, conf, iou_thres
        self.matrix = np.zeros((nc + 1, nc + 1), np.int64)

    def update(self, det: Any, gt: Any) -> None:
        det, gt = _np(det, 6), _np(gt, 5)
        det = det[det[:, 4] >= self.conf]
        dc, gc = det[:, 5].astype(int), gt[:, 0].astype(int)
        md, mg = np.zeros(0, int), np.zeros(0, int)
        if len(det) and len(gt):
            md, mg = _greedy_pairs(*_pairs_over(det[:, :4], gt[:, 1:5], self.iou_thres))
        np.add.at(self.matrix, (dc[md], gc[mg]), 1)
        np.add.at(self.matrix, (self.nc, np.delete(gc, mg)), 1)  # missed gt -> background row
        np.add.at(self.matrix, (np.delete(dc, md), self.nc), 1)  # false detection -> background column

    def normalized(self) -> np.ndarray:
        """Each column (true class) divided by its total: the fraction predicted as each row."""
        return self.matrix / np.maximum(self.matrix.sum(0, keepdims=True), 1)


def _pairs_over(a: np.ndarray, b: np.ndarray, thr: float, chunk: int = 256) -> tuple[np.ndarray, ...]:
    """(i, j, IoU) of the box pairs with IoU > thr, row-major; IoU computed in blocks of `chunk` rows so that a
    dense image (1,500 detections x 10,000 boxes) never holds its whole IoU matrix."""
    bt = torch.from_numpy(np.ascontiguousarray(b))
    out = [], [], []
    for i in range(0, len(a), chunk):
        iou = torchvision.ops.box_iou(torch.from_numpy(np.ascontiguousarray(a[i:i + chunk])), bt).numpy()
        r, c = np.nonzero(iou > thr)
        for o, x in zip(out, (r + i, c, iou[r, c])):
            o.append(x)
    return tuple(np.concatenate(o) for o in out)


def _greedy_pairs(d: np.ndarray, g: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From candidate pairs (det d, gt g, IoU v; row-major), those taken highest IoU first, each side used
    once. Mutually-best pairs are exactly the ones the greedy loop takes, so accept them in rounds (ties go
    to the lower index, as argmax on the dense matrix would)."""
    md, mg = [], []
    while len(d):
        o = np.lexsort((-v, d))  # each det's best gt: first of its run
        first = np.r_[True, d[o][1:] != d[o][:-1]]
        best_g = dict(zip(d[o][first].tolist(), g[o][first].tolist()))
        o = np.lexsort((-v, g))  # each gt's best det
        first = np.r_[True, g[o][1:] != g[o][:-1]]
        gd, gg = d[o][first], g[o][first]
        mutual = np.array([best_g[x] == y for x, y in zip(gd.tolist(), gg.tolist())], bool)
        ad, ag = gd[mutual], gg[mutual]
        md.append(ad)
        mg.append(ag)
        keep = ~np.isin(d, ad) & ~np.isin(g, ag)
        d, g, v = d[keep], g[keep], v[keep]
    return (np.concatenate(md), np.concatenate(mg)) if md else (np.zeros(0, int), np.zeros(0, int))
