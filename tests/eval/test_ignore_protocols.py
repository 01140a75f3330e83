"""val.py --protocol visdrone / tinyperson against a slow, obvious re-implementation of each published rule on
constructed cases: detections and boxes half inside ignored regions, a crowd of 600 boxes, uncertain boxes."""
from __future__ import annotations

import numpy as np
import pytest

from tests.eval.test_val import _run, log_text, odd_coco  # noqa: F401 - fixtures
from utils.eval.coco import coco_eval
from utils.eval.ignore_rules import apply_rule, covered_share
from utils.eval.protocols import PROTOCOLS

IOUS = [0.5 + 0.05 * i for i in range(10)]
REC = np.linspace(0, 1, 101)
IOU_ROWS: dict = {}  # a cache of the reference's IoU rows: speed only


# ------------------------------------------------------------------ the slow reference
def iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w, h = max(0.0, min(ax2, bx2) - max(a[0], b[0])), max(0.0, min(ay2, by2) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def inter_over_own(a, r):
    w = max(0.0, min(a[0] + a[2], r[0] + r[2]) - max(a[0], r[0]))
    h = max(0.0, min(a[1] + a[3], r[1] + r[3]) - max(a[1], r[1]))
    return w * h / (a[2] * a[3])


def pixel_share(box, regions):
    """Share of an integer box's unit pixels inside any region, counted pixel by pixel."""
    x, y, w, h = (int(v) for v in box)
    inside = 0
    for px in range(x, x + w):
        for py in range(y, y + h):
            inside += any(r[0] <= px and px + 1 <= r[0] + r[2] and r[1] <= py and py + 1 <= r[1] + r[3]
                          for r in regions)
    return inside / (w * h)


def slow_ap_ar(gts, dets, thr, max_det, area=(0.0, 1e10)):
    """(AP, recall) of one class at IoU thr: gts [(image, box, ignored)], dets [(image, box, score)].
    Per image the max_det best detections, each in score order taking the unmatched kept box it overlaps
    most (>= thr), else an ignored box, else none. A detection on an ignored box, or unmatched and outside
    the area range, does not count; boxes outside the range are ignored."""
    def out_of_range(b):
        return not area[0] <= b[2] * b[3] <= area[1]
    records, n_pos = [], 0
    for img in sorted({g[0] for g in gts} | {d[0] for d in dets}):
        g_img = [(b, ign or out_of_range(b)) for i, b, ign in gts if i == img]
        ignored = np.array([ign for _, ign in g_img], bool)
        n_pos += int((~ignored).sum())
        d_img = sorted([(s, b) for i, b, s in dets if i == img], key=lambda t: -t[0])[:max_det]
        used = np.zeros(len(g_img), bool)
        for s, b in d_img:
            key = (img, tuple(b), len(g_img))  # the same pairs come back for every threshold and maxDets
            if key not in IOU_ROWS:
                IOU_ROWS[key] = np.array([iou(b, gb) for gb, _ in g_img])
            ious = IOU_ROWS[key]
            best = None
            for want_ignored in (False, True):  # a kept box first, an ignored one only when none fits
                ok = np.nonzero((ignored == want_ignored) & ~used & (ious >= thr - 1e-12))[0]
                if len(ok):
                    best = int(ok[np.argmax(ious[ok])])
                    break
            if best is None:
                if not out_of_range(b):
                    records.append((s, 0))
            else:
                used[best] = True
                if not ignored[best]:
                    records.append((s, 1))
    if n_pos == 0:
        return -1.0, -1.0
    records.sort(key=lambda t: -t[0])
    tp = np.cumsum([r[1] for r in records])
    fp = np.cumsum([1 - r[1] for r in records])
    rc = tp / n_pos
    pr = tp / np.maximum(tp + fp, 1e-12)
    prec = []
    for r in REC:
        ok = pr[rc >= r] if len(rc) else []
        prec.append(max(ok) if len(ok) else 0.0)
    return float(np.mean(prec)), float(rc[-1]) if len(rc) else 0.0


def to_dets(preds):
    return [(p["image_id"], p["bbox"], p["score"]) for p in preds]


def coco(images, anns):
    return {"images": [{"id": i, "file_name": f"{i}.jpg", "width": w, "height": h} for i, (w, h) in images.items()],
            "annotations": [{"id": k + 1, "category_id": 1, "area": a["bbox"][2] * a["bbox"][3], **a}
                            for k, a in enumerate(anns)],
            "categories": [{"id": 1, "name": "x"}]}


# ------------------------------------------------------------------ VisDrone-DET
def visdrone_case():
    anns = [  # image 1: ignored region x 100..200; image 2: two regions, none of them alone half of a box
        {"image_id": 1, "bbox": [100, 0, 100, 200], "iscrowd": 1},
        {"image_id": 1, "bbox": [10, 10, 20, 20]},     # outside
        {"image_id": 1, "bbox": [90, 50, 20, 20]},     # exactly half inside: dropped
        {"image_id": 1, "bbox": [92, 100, 20, 20]},    # 60 % inside: dropped
        {"image_id": 1, "bbox": [85, 150, 20, 20]},    # 25 % inside: kept
        {"image_id": 2, "bbox": [0, 0, 50, 100], "iscrowd": 1},
        {"image_id": 2, "bbox": [60, 0, 50, 100], "iscrowd": 1},
        {"image_id": 2, "bbox": [40, 120, 30, 10]},
    ]
    preds = [
        {"image_id": 1, "bbox": [11, 10, 20, 20], "score": 0.9},
        {"image_id": 1, "bbox": [90, 50, 20, 20], "score": 0.8},    # on a dropped box, half inside: dropped
        {"image_id": 1, "bbox": [150, 150, 20, 20], "score": 0.99},  # wholly inside: dropped (else a false one)
        {"image_id": 1, "bbox": [87, 10, 20, 20], "score": 0.95},   # 35 % inside, nothing there: false
        {"image_id": 1, "bbox": [86, 152, 20, 20], "score": 0.7},
        {"image_id": 2, "bbox": [40, 10, 30, 10], "score": 0.97},   # 1/3 in each region, 2/3 in their union
        {"image_id": 2, "bbox": [41, 121, 30, 10], "score": 0.6},
    ]
    # image 3: a crowd of 600 boxes, found in a descending score order (only 500 count per image)
    for k in range(600):
        x, y = 40 * (k % 25), 40 * (k // 25)
        anns.append({"image_id": 3, "bbox": [x, y, 10, 10]})
        preds.append({"image_id": 3, "bbox": [x + (k % 3), y, 10, 10], "score": 0.5 - k * 1e-4})
    return coco({1: (200, 200), 2: (200, 200), 3: (1000, 1000)}, anns), [{"category_id": 1, **p} for p in preds]


def slow_visdrone(gt, preds):
    regions: dict[int, list] = {}
    for a in gt["annotations"]:
        if a.get("iscrowd"):
            regions.setdefault(a["image_id"], []).append(a["bbox"])
    gts = [(a["image_id"], a["bbox"], False) for a in gt["annotations"] if not a.get("iscrowd")
           and pixel_share(a["bbox"], regions.get(a["image_id"], [])) < 0.5]
    dets = [d for d in to_dets(preds) if pixel_share(d[1], regions.get(d[0], [])) < 0.5]
    out = {}
    for md in (1, 10, 100, 500):
        res = [slow_ap_ar(gts, dets, t, md) for t in IOUS]
        out[f"AR{md}"] = float(np.mean([r[1] for r in res]))
        if md == 500:
            out["AP"] = float(np.mean([r[0] for r in res]))
            out["AP50"], out["AP75"] = res[0][0], res[5][0]
    return out, len(gts), len(dets)


@pytest.mark.slow  # the 600-box crowd through the loop reference: seconds, more on a loaded machine
def test_visdrone_protocol_matches_the_slow_rule():
    gt, preds = visdrone_case()
    want, n_gt, n_dets = slow_visdrone(gt, preds)
    data, kept, counts = apply_rule("visdrone", gt, preds)
    assert (len(data["annotations"]), len(kept)) == (n_gt, n_dets) == (603, 604)
    assert counts == {"regions": 3, "gt_dropped": 2, "dets_dropped": 3, "uncertain": 0}
    got = coco_eval(gt, preds, protocol="visdrone")
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k
    assert got["AR500"] < 0.9 and got["AR100"] < 0.2  # the crowd: 500 of 600 at most, per image
    assert got["stats"] == [got[k] for k in PROTOCOLS["visdrone"].stats_keys]
    # without the rule (COCO) the dropped ones count: a lower AP
    assert coco_eval(gt, preds, protocol="coco")["AP50"] < got["AP50"]


def test_covered_share_against_pixels():
    rng = np.random.default_rng(0)
    for _ in range(30):
        regions = [[int(v) for v in (*rng.integers(0, 30, 2), *rng.integers(1, 20, 2))] for _ in range(3)]
        box = [int(v) for v in (*rng.integers(0, 30, 2), *rng.integers(1, 15, 2))]
        xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
        got = covered_share(np.array([xyxy(box)]), np.array([xyxy(r) for r in regions]))[0]
        assert got == pytest.approx(pixel_share(box, regions), abs=1e-12)


# ------------------------------------------------------------------ TinyPerson
TP_BUCKETS = {"AP50_tiny": (1, 20), "AP50_tiny1": (1, 8), "AP50_tiny2": (8, 12), "AP50_tiny3": (12, 20),
              "AP50_small": (20, 32)}


def tinyperson_case():
    anns, preds = [], []
    rng = np.random.default_rng(1)
    for img in (1, 2):
        anns.append({"image_id": img, "bbox": [300, 300, 100, 100], "iscrowd": 1, "ignore": True})
        for k, side in enumerate((5, 7, 10, 11, 15, 18, 25, 30, 40, 60)):
            x, y = 20 + 50 * k, 20 + 30 * img
            anns.append({"image_id": img, "bbox": [x, y, side, side], "ignore": False, "uncertain": False})
            if rng.random() < 0.7:  # found, a little off
                preds.append({"image_id": img, "bbox": [x + rng.uniform(-1, 1), y, side, side * rng.uniform(0.8, 1.1)],
                              "score": float(rng.uniform(0.3, 1))})
        anns.append({"image_id": img, "bbox": [50, 200, 10, 10], "uncertain": True})    # uncertain
        preds += [
            {"image_id": img, "bbox": [50, 200, 10, 10], "score": 0.99},   # on the uncertain box: neither
            {"image_id": img, "bbox": [390, 320, 20, 20], "score": 0.98},  # half in the ignore region: dropped
            {"image_id": img, "bbox": [392, 340, 20, 20], "score": 0.97},  # 40 % in it: a false one
            {"image_id": img, "bbox": [600, 500, 9, 9], "score": 0.5},     # nothing there: false, tiny2
        ]
    return coco({1: (800, 600), 2: (800, 600)}, anns), [{"category_id": 1, **p} for p in preds]


def slow_tinyperson(gt, preds):
    regions: dict[int, list] = {}
    for a in gt["annotations"]:
        if a.get("iscrowd") or a.get("ignore"):
            regions.setdefault(a["image_id"], []).append(a["bbox"])
    gts = [(a["image_id"], a["bbox"], bool(a.get("uncertain"))) for a in gt["annotations"]
           if not (a.get("iscrowd") or a.get("ignore"))]
    dets = [d for d in to_dets(preds) if all(inter_over_own(d[1], r) < 0.5 for r in regions.get(d[0], []))]
    out = {"AP50": slow_ap_ar(gts, dets, 0.5, 200, (1, 1e10))[0],
           "AP25": slow_ap_ar(gts, dets, 0.25, 200, (1, 1e10))[0],
           "AP75": slow_ap_ar(gts, dets, 0.75, 200, (1, 1e10))[0],
           "AP": float(np.mean([slow_ap_ar(gts, dets, t, 200, (1, 1e10))[0] for t in IOUS]))}
    for k, (lo, hi) in TP_BUCKETS.items():
        out[k] = slow_ap_ar(gts, dets, 0.5, 200, (lo ** 2, hi ** 2))[0]
    return out


def test_tinyperson_protocol_matches_the_slow_rule():
    gt, preds = tinyperson_case()
    want = slow_tinyperson(gt, preds)
    got = coco_eval(gt, preds, protocol="tinyperson")
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k
    assert 0 < got["AP50"] < 1 and got["AP50"] > got["AP75"] and got["AP50_small"] >= 0
    _, kept, counts = apply_rule("tinyperson", gt, preds)
    assert counts == {"regions": 2, "gt_dropped": 0, "dets_dropped": 2, "uncertain": 2}
    # the uncertain box is why: scored as an object, the detections on it would be true positives
    plain = {**gt, "annotations": [{**a, "uncertain": False} for a in gt["annotations"]]}
    assert coco_eval(plain, preds, protocol="tinyperson")["AP50"] != got["AP50"]


def test_protocols_without_detections_and_the_table():
    gt, _ = tinyperson_case()
    empty = coco_eval(gt, [], protocol="tinyperson")
    assert empty["AP50"] == 0.0 and empty["AP25"] == 0.0 and empty["AP50_tiny1"] == 0.0
    gt, _ = visdrone_case()
    assert coco_eval(gt, [], protocol="visdrone")["AR500"] == 0.0
    for name in ("visdrone", "tinyperson"):
        proto = PROTOCOLS[name]
        assert set(proto.stats_keys) <= set(proto.figures)


# ------------------------------------------------------------------ through val.py's engine
def test_val_scores_and_prints_both_protocols(odd_coco, tmp_path, log_text):  # noqa: F811 - the fixtures
    import json
    from pathlib import Path

    for name, title, cap in (("visdrone", "VisDrone-DET", 500), ("tinyperson", "TinyPerson", 300)):
        res = _run(odd_coco, tmp_path, dict(jitter=0.15, extra=4), protocol=name, plots=False, name=name)
        save = Path(res["save_dir"])
        ref = coco_eval(json.loads(odd_coco.read_text()), json.loads((save / "predictions.json").read_text()),
                        protocol=name)
        for k in PROTOCOLS[name].figures:
            assert res[k] == ref[k], (name, k)
        metrics = json.loads((save / "metrics.json").read_text())
        assert metrics["protocol"] == name and metrics["max_det"] == cap
        assert f"pycocotools ({title}, maxDets {PROTOCOLS[name].max_det})" in log_text.getvalue()
    assert "TinyPerson AP50: AP50_tiny (tiny, 1-20px)" in log_text.getvalue()
