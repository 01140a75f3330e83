"""Detection metrics.

- ``coco_eval``: the reference figures, computed by pycocotools' COCOeval on COCO results, with
  extra AI-TOD-style tiny-object area ranges. Standard figures equal a plain COCOeval run.
- ``DetectionStats``: an in-memory, vectorised COCO-style evaluator (101-point interpolated AP
  at IoU .50:.95, per class, per area range) used every epoch, plus the precision / recall /
  F1-vs-confidence curves both paths report. It approximates COCOeval: detections are matched
  to ground truth with COCO's greedy rule (computed in vectorised rounds), but ground truth comes
  from the loader (boxes the dataset dropped, crowd flags and json 'area' fields are not seen).
- ``ConfusionMatrix``: YOLOv5-style (nc + 1)^2 counts with a background row/column.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torchvision

from utils.eval.matching import IOU_THRS, REC_THRS, accumulate, match_image

BIG = 1e5 ** 2  # COCO's upper area bound
# name -> (area range in px^2, key suffix). The first four are COCO's; the rest follow AI-TOD
# (very tiny < 8 px, tiny 8-16, small 16-32 on the sqrt of the box area).
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, BIG), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, BIG),
    "vt": (0.0, 8.0 ** 2), "t": (8.0 ** 2, 16.0 ** 2), "s16": (16.0 ** 2, 32.0 ** 2),
    "tiny": (0.0, 16.0 ** 2),  # everything under 16x16 px: the AP_tiny that shared/bench/peer.py reports
}
AP_KEY = {"all": "AP", "small": "APs", "medium": "APm", "large": "APl", "vt": "AP_vt", "t": "AP_t", "s16": "AP_s16",
          "tiny": "AP_tiny"}
AR_KEY = {"all": "AR100", "small": "ARs", "medium": "ARm", "large": "ARl", "vt": "AR_vt", "t": "AR_t", "s16": "AR_s16",
          "tiny": "AR_tiny"}


def _mean_valid(a: np.ndarray) -> float:
    """pycocotools' convention: mean of entries > -1, or -1 when there are none."""
    v = a[a > -1]
    return float(v.mean()) if v.size else -1.0


def load_gt(gt_json: str | Path | dict) -> "Any":
    """A pycocotools COCO object; fills a missing 'area' with w*h (COCOeval needs it) and wraps
    unreadable files in a ValueError naming the file."""
    from pycocotools.coco import COCO
    if isinstance(gt_json, (str, Path)):
        try:
            data = json.loads(Path(gt_json).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{gt_json}: cannot read ground-truth json ({e})") from None
    else:
        data = copy.deepcopy(gt_json)
    for a in data.get("annotations", []):
        if "area" not in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_eval(gt_json: str | Path | dict | Any, predictions: list[dict], img_ids: Sequence[int] | None = None,
              use_cats: bool = True) -> dict[str, Any]:
    """COCOeval(bbox) on result dicts, with area ranges extended by the tiny buckets.

    Returns AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl (identical to
    ``COCOeval.stats``, -1 where undefined), AP_vt / AP_t / AP_s16 and AR_vt / AR_t / AR_s16,
    'stats' (the 12 standard numbers in COCOeval's order), 'per_class' {category_id: {AP, AP50}},
    and 'pr50' {category_id: precision at the 101 recall thresholds, IoU .5} for plots.
    img_ids limits evaluation to those images (default: every image of the ground truth)."""
    from pycocotools.cocoeval import COCOeval
    gt = gt_json if hasattr(gt_json, "getImgIds") else load_gt(gt_json)
    names = list(AREA_RANGES)
    if not predictions:  # loadRes cannot take an empty list: nothing detected scores 0
        return _empty_result(gt, names, img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(predictions))  # loadRes adds fields in place
        ev = COCOeval(gt, dt, "bbox")
        ev.params.areaRng = [list(AREA_RANGES[n]) for n in names]
        ev.params.areaRngLbl = names
        if img_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in img_ids)
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"]  # (T, R, K, A, M)
    r = ev.eval["recall"]     # (T, K, A, M)
    m100 = list(ev.params.maxDets).index(100)
    out: dict[str, Any] = {}
    for a, n in enumerate(names):
        out[AP_KEY[n]] = _mean_valid(p[:, :, :, a, m100])
        out[AR_KEY[n]] = _mean_valid(r[:, :, a, m100])
    t50, t75 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5))), int(np.argmin(np.abs(ev.params.iouThrs - 0.75)))
    out["AP50"] = _mean_valid(p[t50, :, :, 0, m100])
    out["AP75"] = _mean_valid(p[t75, :, :, 0, m100])
    for j, md in enumerate(ev.params.maxDets):
        if md != 100:
            out[f"AR{md}"] = _mean_valid(r[:, :, 0, j])
    out["stats"] = [out[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
                                     "ARs", "ARm", "ARl")]
    cats = ev.params.catIds if use_cats else [-1]
    out["per_class"] = {int(c): {"AP": _mean_valid(p[:, :, k, 0, m100]), "AP50": _mean_valid(p[t50, :, k, 0, m100])}
                        for k, c in enumerate(cats)}
    out["pr50"] = {int(c): p[t50, :, k, 0, m100].copy() for k, c in enumerate(cats)}
    return out


def _empty_result(gt: Any, names: list[str], img_ids: Sequence[int] | None) -> dict[str, Any]:
    """Figures for 'no detections at all': 0 where ground truth exists in a bucket, else -1."""
    ids = set(gt.getImgIds() if img_ids is None else img_ids)
    anns = [a for a in gt.dataset.get("annotations", []) if a["image_id"] in ids and not a.get("iscrowd", 0)]
    out: dict[str, Any] = {}
    for n in names:
        lo, hi = AREA_RANGES[n]
        v = 0.0 if any(lo <= a["area"] <= hi for a in anns) else -1.0
        out[AP_KEY[n]] = out[AR_KEY[n]] = v
    out["AP50"] = out["AP75"] = out["AR1"] = out["AR10"] = out["AP"]
    out["stats"] = [out[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
                                     "ARs", "ARm", "ARl")]
    cats = gt.getCatIds()
    has = {a["category_id"] for a in anns}
    out["per_class"] = {int(c): {"AP": 0.0 if c in has else -1.0, "AP50": 0.0 if c in has else -1.0} for c in cats}
    out["pr50"] = {int(c): np.zeros(len(REC_THRS)) if c in has else -np.ones(len(REC_THRS)) for c in cats}
    return out




# ----------------------------------------------------------------------------- in-memory evaluation

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
        self.rngs = [AREA_RANGES[a] for a in self.areas]
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
            out[AP_KEY[name]] = _mean_valid(prec[:, :, :, a])
            out[AR_KEY[name]] = _mean_valid(rec[:, :, a])
        out["AP50"], out["AP75"] = _mean_valid(prec[0, :, :, 0]), _mean_valid(prec[5, :, :, 0])
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
                             "AP50": _mean_valid(prec[0, :, k, 0]), "AP": _mean_valid(prec[:, :, k, 0])}
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
            iou = torchvision.ops.box_iou(torch.from_numpy(det[:, :4]), torch.from_numpy(gt[:, 1:5])).numpy()
            md, mg = _greedy_pairs(iou, self.iou_thres)
        np.add.at(self.matrix, (dc[md], gc[mg]), 1)
        np.add.at(self.matrix, (self.nc, np.delete(gc, mg)), 1)  # missed gt -> background row
        np.add.at(self.matrix, (np.delete(dc, md), self.nc), 1)  # false detection -> background column

    def normalized(self) -> np.ndarray:
        """Each column (true class) divided by its total: the fraction predicted as each row."""
        return self.matrix / np.maximum(self.matrix.sum(0, keepdims=True), 1)


def _greedy_pairs(iou: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (det, gt) with IoU > thr taken highest IoU first, each side used once. Mutually-best
    pairs are exactly the ones the greedy loop takes, so accept them in rounds."""
    iou = np.where(iou > thr, iou, -1.0)
    md, mg = [], []
    while (iou > 0).any():
        bd = iou.argmax(1)   # each det's best gt
        bg = iou.argmax(0)   # each gt's best det
        d = np.flatnonzero((iou.max(1) > 0) & (bg[bd] == np.arange(len(bd))))
        g = bd[d]
        md.append(d)
        mg.append(g)
        iou[d, :] = -1.0
        iou[:, g] = -1.0
    return (np.concatenate(md), np.concatenate(mg)) if md else (np.zeros(0, int), np.zeros(0, int))
