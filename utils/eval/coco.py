"""The reference figures: pycocotools' COCOeval on COCO results, configured by an evaluation protocol
(utils/eval/protocols.py). Under the default COCO protocol the standard figures equal a plain COCOeval run;
the tiny buckets are extra area ranges evaluated in the same pass.

The evaluator: pycocotools' COCOeval matches detections in Python loops, O(detections x ground truth) per
image, class and area range: 10,000 boxes per image took ~127 s per image. faster-coco-eval's COCOeval_faster
runs the same evaluateImg/accumulate in C++ on the same COCO objects and gives the same arrays (to 1 ulp,
tests/eval/test_coco_evaluators.py against pycocotools, the reference); it is used where installed.
benchmarks/dense_eval.py measures both."""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils.eval.matching import REC_THRS
from utils.eval.ignore_rules import apply_rule
from utils.eval.protocols import AP_KEY, COCO_IOUS, Protocol, get_protocol


def mean_valid(a: np.ndarray) -> float:
    """pycocotools' convention: mean of entries > -1, or -1 when there are none."""
    v = a[a > -1]
    return float(v.mean()) if v.size else -1.0


def load_gt(gt_json: str | Path | dict) -> Any:
    """A pycocotools COCO object; fills a missing 'area' with w*h and 'iscrowd' with 0 (COCOeval needs both) and wraps
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
        a.setdefault("iscrowd", 0)  # COCOeval reads it from every box
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


EVALUATORS = ("auto", "pycocotools", "faster-coco-eval")


def cocoeval_class(evaluator: str = "auto") -> type:
    """The COCOeval class: 'pycocotools' (the reference), 'faster-coco-eval' (same figures, C++ matching), or
    'auto': faster-coco-eval where installed, else pycocotools."""
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")
    if evaluator != "pycocotools":
        try:
            from faster_coco_eval import COCOeval_faster
            return COCOeval_faster
        except ImportError:
            if evaluator != "auto":
                raise
    from pycocotools.cocoeval import COCOeval
    return COCOeval


def coco_eval(gt_json: str | Path | dict | Any, predictions: list[dict], img_ids: Sequence[int] | None = None,
              use_cats: bool = True, protocol: str | Protocol = "coco", evaluator: str = "auto") -> dict[str, Any]:
    """COCOeval(bbox) on result dicts with the protocol's area ranges and maxDets.

    COCO protocol: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl (identical to
    ``COCOeval.stats``, -1 where undefined), AP_vt / AP_t / AP_s16 / AP_tiny and their AR.
    AI-TOD protocol: AP, AP50, AP75, AP_vt, AP_t, AP_s16, AP_m32, AR100, AR300, AR1500 and the buckets' AR,
    every AP and bucket AR at maxDets 1500.
    VisDrone and TinyPerson protocols first rewrite ground truth and detections by their rule
    (utils/eval/ignore_rules.py): VisDrone AP, AP50, AP75, AR1..AR500; TinyPerson AP50, AP25, AP75, AP and
    AP50 per TinyPerson size bucket (AP50_tiny, AP50_tiny1, ..), uncertain boxes ignored.
    Also 'stats' (the protocol's summary vector), 'per_class' {category_id: {AP, AP50}} and 'pr50'
    {category_id: precision at the 101 recall thresholds, IoU .5} for plots.
    img_ids limits evaluation to those images (default: every image of the ground truth).
    evaluator: see cocoeval_class (the figures are the same)."""
    COCOeval = cocoeval_class(evaluator)
    proto = get_protocol(protocol)
    gt = gt_json if hasattr(gt_json, "getImgIds") else load_gt(gt_json)
    if proto.rule:
        data, predictions, _ = apply_rule(proto.rule, gt.dataset, predictions)
        gt = load_gt(data)
    if not predictions:  # loadRes cannot take an empty list: nothing detected scores 0
        return _empty_result(gt, proto, img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(predictions))  # loadRes adds fields in place
        ev = (_flagged_cocoeval() if proto.rule else COCOeval)(gt, dt, "bbox")
        if proto.iou_thrs != COCO_IOUS:
            ev.params.iouThrs = np.asarray(proto.iou_thrs, np.float64)
        ev.params.areaRng = [list(r) for r in proto.area_ranges.values()]
        ev.params.areaRngLbl = list(proto.areas)
        ev.params.maxDets = list(proto.max_dets)  # evaluate() keeps the top maxDets[-1] per image and class
        if img_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in img_ids)
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"]  # (T, R, K, A, M)
    r = ev.eval["recall"]     # (T, K, A, M)
    m = list(ev.params.maxDets).index(proto.max_det)  # the protocol reads every AP at its largest maxDets
    ious = np.asarray(ev.params.iouThrs)
    t50, t75 = int(np.argmin(np.abs(ious - 0.5))), int(np.argmin(np.abs(ious - 0.75)))
    # AP and AR average IoU .50:.95 (every threshold unless the protocol adds lower ones); bucket figures
    # too, or one threshold where the protocol says so (TinyPerson: AP50 per bucket)
    main = slice(None) if proto.iou_thrs == COCO_IOUS else np.nonzero(ious >= 0.5 - 1e-9)[0]
    bucket = main if proto.bucket_iou is None else [int(np.argmin(np.abs(ious - proto.bucket_iou)))]
    out: dict[str, Any] = {}
    for a, n in enumerate(proto.areas):
        sel = main if a == 0 else bucket
        out[AP_KEY[n]] = mean_valid(p[sel, :, :, a, m])
        out[proto.ar_key(n)] = mean_valid(r[sel, :, a, m])
    for t in proto.iou_thrs:
        if t < 0.5:  # TinyPerson's AP25
            out[f"AP{round(t * 100)}"] = mean_valid(p[int(np.argmin(np.abs(ious - t))), :, :, 0, m])
    out["AP50"] = mean_valid(p[t50, :, :, 0, m])
    out["AP75"] = mean_valid(p[t75, :, :, 0, m])
    for j, md in enumerate(ev.params.maxDets):
        if md != proto.max_det:
            out[proto.ar_key("all", md)] = mean_valid(r[:, :, 0, j])
    out["stats"] = [out[k] for k in proto.stats_keys]
    cats = ev.params.catIds if use_cats else [-1]
    out["per_class"] = {int(c): {"AP": mean_valid(p[main, :, k, 0, m]), "AP50": mean_valid(p[t50, :, k, 0, m])}
                        for k, c in enumerate(cats)}
    out["pr50"] = {int(c): p[t50, :, k, 0, m].copy() for k, c in enumerate(cats)}
    return out


def _empty_result(gt: Any, proto: Protocol, img_ids: Sequence[int] | None) -> dict[str, Any]:
    """Figures for 'no detections at all': 0 where ground truth exists in a bucket, else -1."""
    ids = set(gt.getImgIds() if img_ids is None else img_ids)
    anns = [a for a in gt.dataset.get("annotations", []) if a["image_id"] in ids and not a.get("iscrowd", 0)
            and not a.get("uncertain", False)]
    out: dict[str, Any] = {}
    for n, (lo, hi) in proto.area_ranges.items():
        v = 0.0 if any(lo <= a["area"] <= hi for a in anns) else -1.0
        out[AP_KEY[n]] = out[proto.ar_key(n)] = v
    out["AP50"] = out["AP75"] = out["AP"]
    for t in proto.iou_thrs:
        if t < 0.5:
            out[f"AP{round(t * 100)}"] = out["AP"]
    for md in proto.max_dets:
        out[proto.ar_key("all", md)] = out["AP"]
    out["stats"] = [out[k] for k in proto.stats_keys]
    cats = gt.getCatIds()
    has = {a["category_id"] for a in anns}
    out["per_class"] = {int(c): {"AP": 0.0 if c in has else -1.0, "AP50": 0.0 if c in has else -1.0} for c in cats}
    out["pr50"] = {int(c): np.zeros(len(REC_THRS)) if c in has else -np.ones(len(REC_THRS)) for c in cats}
    return out



_FLAGGED: list[type] = []  # the subclass below, built on first use (pycocotools is imported lazily)


def _flagged_cocoeval() -> type:
    """COCOeval that also ignores ground truth flagged ``uncertain`` (TinyPerson): pycocotools sets each
    box's ignore flag from iscrowd alone; a detection matched to an ignored box is neither true nor false."""
    if not _FLAGGED:
        from pycocotools.cocoeval import COCOeval

        class FlaggedCOCOeval(COCOeval):
            def _prepare(self) -> None:
                super()._prepare()
                for gts in self._gts.values():
                    for g in gts:
                        if g.get("uncertain", False):
                            g["ignore"] = 1

        _FLAGGED.append(FlaggedCOCOeval)
    return _FLAGGED[0]
