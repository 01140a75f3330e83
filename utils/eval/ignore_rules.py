"""How the VisDrone-DET and TinyPerson protocols treat ignore regions and flagged boxes, as a rewrite of the
ground truth and the detections before COCOeval scores them (utils/eval/coco.py).

Ignore regions are the annotations with ``iscrowd: 1`` (the converters write VisDrone's ignored regions and
not-evaluated boxes, and TinyPerson's ``ignore`` boxes, that way) or an ``ignore`` flag.

- visdrone: per image, ground truth and detections with at least half of their own area inside the union of
  the ignore regions are dropped (VisDrone-DET's toolkit draws the regions into a mask and measures each
  box's covered share; here the union is measured exactly, without the toolkit's pixel rounding); the
  regions themselves are no objects.
- tinyperson: detections with intersection / own area (IoF) >= 0.5 against any ignore region are dropped;
  the regions are no objects; boxes flagged ``uncertain`` stay as ignored ground truth (COCOeval's
  ``ignore``: a detection matched to one is neither true nor false); every box's area is w * h, so the
  size buckets go by sqrt(w * h) in original pixels.
Both drop detections before the per-image cap (maxDets), as VisDrone's toolkit does.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np

COVER_THR = 0.5  # VisDrone: share of a box inside ignored regions from which it is dropped
IOF_THR = 0.5    # TinyPerson: IoF with an ignore region from which a detection is not counted
RULES = ("visdrone", "tinyperson")


def is_region(ann: dict) -> bool:
    return bool(ann.get("iscrowd", 0)) or bool(ann.get("ignore", False))


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    b = np.asarray(xywh, np.float64).reshape(-1, 4)
    return np.concatenate((b[:, :2], b[:, :2] + b[:, 2:]), 1)


def covered_share(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(n,) share of each xyxy box's area inside the union of the xyxy regions (0 for a box without area)."""
    out = np.zeros(len(boxes))
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        area = (x2 - x1) * (y2 - y1)
        if area <= 0 or not len(regions):
            continue
        r = np.asarray(regions, np.float64).reshape(-1, 4).copy()
        r[:, [0, 2]] = r[:, [0, 2]].clip(x1, x2)
        r[:, [1, 3]] = r[:, [1, 3]].clip(y1, y2)
        r = r[(r[:, 2] > r[:, 0]) & (r[:, 3] > r[:, 1])]
        if not len(r):
            continue
        # union area: over each strip between consecutive x edges, the merged length of the y intervals there
        xs = np.unique(r[:, [0, 2]])
        union = 0.0
        for xa, xb in zip(xs[:-1], xs[1:]):
            on = r[(r[:, 0] <= xa) & (r[:, 2] >= xb)]
            if not len(on):
                continue
            spans = on[np.argsort(on[:, 1]), 1::2]
            length, lo, hi = 0.0, spans[0, 0], spans[0, 1]
            for a, b in spans[1:]:
                if a > hi:
                    length, lo, hi = length + hi - lo, a, b
                else:
                    hi = max(hi, b)
            union += (xb - xa) * (length + hi - lo)
        out[i] = union / area
    return out


def iof(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(n, k) intersection of each xyxy box with each xyxy region over the box's own area."""
    b, r = np.asarray(boxes, np.float64).reshape(-1, 1, 4), np.asarray(regions, np.float64).reshape(1, -1, 4)
    w = (np.minimum(b[..., 2], r[..., 2]) - np.maximum(b[..., 0], r[..., 0])).clip(0)
    h = (np.minimum(b[..., 3], r[..., 3]) - np.maximum(b[..., 1], r[..., 1])).clip(0)
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return np.where(area > 0, w * h / np.where(area > 0, area, 1.0), 0.0)


def apply_rule(rule: str, gt: dict, predictions: list[dict]) -> tuple[dict, list[dict], dict[str, int]]:
    """(ground truth, detections, counts) rewritten by ``rule`` (module doc); the inputs are not changed (the
    detections kept are the same dicts).
    counts: regions, gt_dropped, dets_dropped, uncertain."""
    if rule not in RULES:
        raise ValueError(f"unknown evaluation rule {rule!r}; choose from {RULES}")
    data = copy.deepcopy(gt)
    anns = data.get("annotations", [])
    regions: dict[int, list] = defaultdict(list)
    for a in anns:
        if is_region(a):
            regions[a["image_id"]].append(a["bbox"])
    reg = {i: _xyxy(np.asarray(r)) for i, r in regions.items()}
    counts = {"regions": sum(len(r) for r in regions.values()), "gt_dropped": 0, "dets_dropped": 0, "uncertain": 0}
    objects = [a for a in anns if not is_region(a)]
    if rule == "visdrone":
        kept = []
        for a in objects:
            r = reg.get(a["image_id"])
            if r is not None and covered_share(_xyxy(a["bbox"]), r)[0] >= COVER_THR:
                counts["gt_dropped"] += 1
            else:
                kept.append(a)
        objects = kept
    else:
        for a in objects:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
            counts["uncertain"] += bool(a.get("uncertain", False))
    by_img: dict[int, list[int]] = defaultdict(list)
    for k, d in enumerate(predictions):
        if d["image_id"] in reg:
            by_img[d["image_id"]].append(k)
    drop = set()
    for iid, ks in by_img.items():
        boxes = _xyxy(np.asarray([predictions[k]["bbox"] for k in ks]))
        if rule == "visdrone":
            out = covered_share(boxes, reg[iid]) >= COVER_THR
        else:
            out = (iof(boxes, reg[iid]) >= IOF_THR).any(1)
        drop.update(k for k, o in zip(ks, out.tolist()) if o)
    counts["dets_dropped"] = len(drop)
    data["annotations"] = objects
    return data, [d for k, d in enumerate(predictions) if k not in drop], counts
