"""Metrics against pycocotools (perfect / shifted / missing / extra boxes), the fast in-memory
evaluator against COCOeval, and the P/R curves and confusion matrix against slow re-implementations."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from utils.eval.matching import match_image
from utils.eval.metrics import AREA_RANGES, ConfusionMatrix, DetectionStats, coco_eval


def synth_gt(n_img: int = 40, nc: int = 3, seed: int = 0, dense: bool = False) -> dict:
    """Boxes from ~3 px to ~150 px so every size bucket has objects; dense=True packs them."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n_img):
        W, H = int(rng.integers(250, 500)), int(rng.integers(250, 500))
        images.append({"id": 100 + 3 * i, "width": W, "height": H, "file_name": f"{i}.jpg"})
        for _ in range(int(rng.integers(0, 14))):
            s = float(rng.choice([4, 6, 11, 22, 45, 130]) * rng.uniform(0.7, 1.3))
            w, h = s * rng.uniform(0.6, 1.5), s * rng.uniform(0.6, 1.5)
            lim_x, lim_y = (min(W - w, 60), min(H - h, 60)) if dense else (W - w, H - h)
            x, y = rng.uniform(0, lim_x), rng.uniform(0, lim_y)
            anns.append({"id": len(anns) + 1, "image_id": 100 + 3 * i, "category_id": int(rng.integers(1, nc + 1)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": k, "name": f"c{k}"} for k in range(1, nc + 1)]}


def perturb(gt: dict, seed: int = 0, shift: float = 0.0, jitter: float = 0.0, drop: float = 0.0,
            extra: float = 0.0, dup: int = 0, wrong_cls: float = 0.0) -> list[dict]:
    """Predictions from ground truth: shifted/jittered copies, dropped boxes, duplicates, random extras."""
    rng = np.random.default_rng(seed)
    nc = len(gt["categories"])
    preds = []
    for a in gt["annotations"]:
        for _ in range(1 + dup):
            if rng.random() < drop:
                continue
            x, y, w, h = a["bbox"]
            j = rng.normal(0, jitter, 4) * [w, h, w, h]
            c = a["category_id"] if rng.random() >= wrong_cls else int(rng.integers(1, nc + 1))
            preds.append({"image_id": a["image_id"], "category_id": c, "score": round(float(rng.random()), 5),
                          "bbox": [round(float(v), 3) for v in (x + shift * w + j[0], y + j[1],
                                                                max(w + j[2], 1), max(h + j[3], 1))]})
    for im in gt["images"]:
        for _ in range(rng.poisson(extra)):
            w, h = rng.uniform(2, 80, 2)
            preds.append({"image_id": im["id"], "category_id": int(rng.integers(1, nc + 1)),
                          "score": round(float(rng.random()), 5),
                          "bbox": [round(float(v), 3) for v in (rng.uniform(0, im["width"] - w),
                                                                 rng.uniform(0, im["height"] - h), w, h)]})
    return preds


def plain_cocoeval(gt: dict, preds: list[dict], area_rng: list | None = None) -> np.ndarray:
    """pycocotools used the documented way: its own stats vector."""
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(copy.deepcopy(preds)), "bbox")
        if area_rng is not None:  # one custom range evaluated as 'all': stats[0] is AP in that range
            ev.params.areaRng, ev.params.areaRngLbl = [area_rng] * 4, ["all", "small", "medium", "large"]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats)


CASES = {
    "perfect": dict(),
    "shifted": dict(shift=0.3),
    "missing": dict(drop=0.4, jitter=0.05),
    "extra": dict(extra=6, jitter=0.05),
    "mixed": dict(jitter=0.12, drop=0.2, extra=4, dup=1, wrong_cls=0.15),
}


@pytest.mark.parametrize("case", list(CASES))
def test_coco_eval_equals_plain_cocoeval(case):
    gt = synth_gt(seed=1)
    preds = perturb(gt, seed=2, **CASES[case])
    ours = coco_eval(gt, preds)
    ref = plain_cocoeval(gt, preds)
    # extended area ranges leave the standard figures untouched (1e-12: faster-coco-eval sums in C++, 1 ulp off)
    assert ours["stats"] == pytest.approx(ref.tolist(), abs=1e-12)
    if case == "perfect":
        assert ours["AP"] == ours["AP_vt"] == ours["AP_t"] == ours["AP_s16"] == 1.0
    if case == "shifted":  # a 0.3-width shift gives IoU ~0.54: counts at .5 only
        assert 0.0 < ours["AP"] < ours["AP50"]


def test_tiny_buckets_equal_cocoeval_restricted_to_that_range():
    gt = synth_gt(seed=3)
    preds = perturb(gt, seed=4, **CASES["mixed"])
    ours = coco_eval(gt, preds)
    for key, name in (("AP_vt", "vt"), ("AP_t", "t"), ("AP_s16", "s16"), ("APs", "small")):
        ref = plain_cocoeval(gt, preds, list(AREA_RANGES[name]))
        assert ours[key] == pytest.approx(ref[0], abs=1e-12), key
        assert ours["AR" + key[2:]] == pytest.approx(ref[8], abs=1e-12), key  # AR@100 in that range


def test_coco_eval_per_class_and_empty_and_img_ids():
    gt = synth_gt(seed=5)
    preds = perturb(gt, seed=6, jitter=0.1, extra=2)
    ours = coco_eval(gt, preds)
    ref_ap = []
    for c in (1, 2, 3):  # per class AP = COCOeval run on that category alone
        g = dict(gt, categories=[k for k in gt["categories"] if k["id"] == c])
        g["annotations"] = [a for a in gt["annotations"] if a["category_id"] == c]
        ref = plain_cocoeval(g, [p for p in preds if p["category_id"] == c])
        ref_ap.append(ref[0])
        assert ours["per_class"][c]["AP"] == pytest.approx(ref[0], abs=1e-12)
        assert ours["per_class"][c]["AP50"] == pytest.approx(ref[1], abs=1e-12)
    assert ours["AP"] == pytest.approx(np.mean(ref_ap), abs=1e-12)
    empty = coco_eval(gt, [])
    assert empty["AP"] == 0.0 and empty["AP50"] == 0.0
    ids = [im["id"] for im in gt["images"][:10]]
    sub = dict(gt, images=gt["images"][:10], annotations=[a for a in gt["annotations"] if a["image_id"] in ids])
    assert coco_eval(gt, preds, img_ids=ids)["stats"] == pytest.approx(plain_cocoeval(
        sub, [p for p in preds if p["image_id"] in ids]).tolist(), abs=1e-12)


def _to_arrays(gt: dict, preds: list[dict], image_id: int) -> tuple[np.ndarray, np.ndarray]:
    g = [[a["category_id"] - 1, a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
         for a in gt["annotations"] if a["image_id"] == image_id]
    d = [[p["bbox"][0], p["bbox"][1], p["bbox"][0] + p["bbox"][2], p["bbox"][1] + p["bbox"][3], p["score"],
          p["category_id"] - 1] for p in preds if p["image_id"] == image_id]
    return np.array(d, float).reshape(-1, 6), np.array(g, float).reshape(-1, 5)


def _fast(gt: dict, preds: list[dict], areas=tuple(AREA_RANGES)) -> dict:
    st = DetectionStats(len(gt["categories"]), areas=areas)
    for im in gt["images"][::-1]:  # order of updates must not matter
        d, g = _to_arrays(gt, preds, im["id"])
        st.update(d, g, im["id"])
    return st.compute()


@pytest.mark.parametrize("dense", [False, True])
def test_fast_stats_equal_pycocotools(dense):
    """Boxes' areas equal the json 'area' here, so the in-memory figures match COCOeval exactly,
    also for dense clusters where greedy matching has conflicts to resolve."""
    gt = synth_gt(seed=7, dense=dense)
    preds = perturb(gt, seed=8, jitter=0.15, dup=3 if dense else 1, extra=4, wrong_cls=0.1)
    ref, fast = coco_eval(gt, preds), _fast(gt, preds)
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP_vt", "AP_t", "AP_s16", "AR100", "ARs", "AR_vt"):
        assert fast[k] == pytest.approx(ref[k], abs=1e-12), k
    assert 0.05 < ref["AP"] < 0.95  # a non-trivial case
    for row in fast["per_class"]:
        assert row["AP"] == pytest.approx(ref["per_class"][row["class"] + 1]["AP"], abs=1e-12)


def slow_match(det: np.ndarray, gt: np.ndarray, thr: float, lo: float, hi: float):
    """COCOeval.evaluateImg written out: per class, detections by score, best free gt (in range first)."""
    def iou(a, b):
        iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
        return iw * ih / u
    tp, ign = np.zeros(len(det), bool), np.zeros(len(det), bool)
    g_in = [lo <= (g[3] - g[1]) * (g[4] - g[2]) <= hi for g in gt]
    taken = [False] * len(gt)
    for di in sorted(range(len(det)), key=lambda i: -det[i, 4]):
        best, best_iou = -1, min(thr, 1 - 1e-10)
        for gi in sorted(range(len(gt)), key=lambda j: not g_in[j]):
            if taken[gi] or gt[gi, 0] != det[di, 5]:
                continue
            if best > -1 and g_in[best] and not g_in[gi]:
                break
            v = iou(det[di], gt[gi, 1:])
            if v >= best_iou:
                best, best_iou = gi, v
        if best > -1:
            taken[best] = True
            tp[di], ign[di] = g_in[best], not g_in[best]
        else:
            a = (det[di, 2] - det[di, 0]) * (det[di, 3] - det[di, 1])
            ign[di] = not lo <= a <= hi
    return tp, ign


def test_match_image_equals_slow_greedy():
    gt = synth_gt(n_img=15, seed=9, dense=True)
    preds = perturb(gt, seed=10, jitter=0.2, dup=4, extra=3, wrong_cls=0.2)
    rngs = [AREA_RANGES[a] for a in ("all", "vt", "t", "medium")]
    thrs = np.array([0.3, 0.5, 0.75])
    checked = 0
    for im in gt["images"]:
        d, g = _to_arrays(gt, preds, im["id"])
        keep, tp, ign, _ = match_image(d, g, thrs, rngs)
        assert keep.all()
        for a, (lo, hi) in enumerate(rngs):
            for t, thr in enumerate(thrs):
                rtp, rign = slow_match(d, g, thr, lo, hi)
                np.testing.assert_array_equal(tp[a, t], rtp)
                np.testing.assert_array_equal(ign[a, t], rign)
                checked += int(rtp.sum())
    assert checked > 100


def test_precision_recall_at_reported_confidence():
    """P and R reported by DetectionStats = counts at its chosen confidence, matching at IoU .5."""
    gt = synth_gt(seed=11)
    preds = perturb(gt, seed=12, jitter=0.12, extra=5, wrong_cls=0.1)
    res = _fast(gt, preds, areas=("all",))
    c = res["curves"]["best_conf"]
    ps, rs = [], []
    for k in range(3):
        tp = n_det = n_gt = 0
        for im in gt["images"]:
            d, g = _to_arrays(gt, preds, im["id"])
            d, g = d[(d[:, 5] == k) & (d[:, 4] >= c)], g[g[:, 0] == k]
            t, _ = slow_match(d, g, 0.5, 0, 1e10)
            tp, n_det, n_gt = tp + t.sum(), n_det + len(d), n_gt + len(g)
        ps.append(tp / n_det if n_det else 1.0)
        rs.append(tp / n_gt)
        assert res["per_class"][k]["P"] == pytest.approx(ps[-1], abs=1e-12)
        assert res["per_class"][k]["R"] == pytest.approx(rs[-1], abs=1e-12)
    assert res["precision"] == pytest.approx(np.mean(ps)) and res["recall"] == pytest.approx(np.mean(rs))
    f1 = res["curves"]["f1"][:, res["curves"]["best"]].mean()
    assert f1 == pytest.approx(res["curves"]["f1"].mean(0).max())  # reported where mean F1 peaks


def test_confusion_matrix_against_loop():
    rng = np.random.default_rng(13)
    nc = 3
    cm = ConfusionMatrix(nc, conf=0.25, iou_thres=0.45)
    ref = np.zeros((nc + 1, nc + 1), int)
    for _ in range(20):
        g = np.c_[rng.integers(0, nc, 6), np.sort(rng.uniform(0, 60, (6, 2)), 0)]
        g = np.c_[g[:, 0], g[:, 1], g[:, 2], g[:, 1] + rng.uniform(5, 30, 6), g[:, 2] + rng.uniform(5, 30, 6)]
        d = np.c_[g[:, 1:5] + rng.normal(0, 4, (6, 4)), rng.random(6), rng.integers(0, nc, 6)]
        d = np.r_[d, np.c_[rng.uniform(0, 50, (3, 2)), rng.uniform(55, 90, (3, 2)), rng.random(3),
                           rng.integers(0, nc, 3)]]
        cm.update(d, g)
        d = d[d[:, 4] >= 0.25]
        pairs = sorted(((slow_iou(a[:4], b[1:]), i, j) for i, a in enumerate(d) for j, b in enumerate(g)), reverse=True)
        used_d, used_g = set(), set()
        for v, i, j in pairs:
            if v > 0.45 and i not in used_d and j not in used_g:
                used_d.add(i), used_g.add(j)
                ref[int(d[i, 5]), int(g[j, 0])] += 1
        for j in set(range(len(g))) - used_g:
            ref[nc, int(g[j, 0])] += 1
        for i in set(range(len(d))) - used_d:
            ref[int(d[i, 5]), nc] += 1
    np.testing.assert_array_equal(cm.matrix, ref)
    assert cm.matrix[:nc, :nc].sum() > 20  # plenty of matched pairs
    np.testing.assert_allclose(cm.normalized().sum(0)[cm.matrix.sum(0) > 0], 1.0)


def slow_iou(a, b) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)


# ---------------------------------------------------------------- the AI-TOD protocol (val.py --protocol aitod)

def aitod_gt(seed: int = 0) -> dict:
    """Two boxes per AI-TOD bucket per image (~5, 12, 24 px; 50 and 120 px both 'medium'), plus one crowded
    image with 700 tiny objects of class 1: more than 300 per image and class, so maxDets 100 / 300 / 1500
    give different figures."""
    rng = np.random.default_rng(seed)
    images, anns = [], []

    def add(image_id: int, x: float, y: float, w: float, h: float, c: int) -> None:
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": c, "bbox": [x, y, w, h],
                     "area": w * h, "iscrowd": 0})

    for i in range(12):
        images.append({"id": i + 1, "width": 400, "height": 400, "file_name": f"{i}.jpg"})
        for s in (5, 12, 24, 50, 120):  # sides within +-20%: never across a bucket border
            for _ in range(2):
                w, h = s * rng.uniform(0.8, 1.2, 2)
                add(i + 1, rng.uniform(0, 400 - w), rng.uniform(0, 400 - h), w, h, int(rng.integers(1, 4)))
    images.append({"id": 99, "width": 600, "height": 600, "file_name": "crowd.jpg"})
    for k in range(700):
        add(99, 20.0 * (k % 30) + 3, 20.0 * (k // 30) + 3, 6.0, 6.0, 1)
    return {"images": images, "annotations": anns,
            "categories": [{"id": k, "name": f"c{k}"} for k in range(1, 4)]}


def aitod_cocoeval(gt: dict, preds: list[dict]) -> COCOeval:
    """pycocotools configured by hand as AI-TOD evaluates: its area ranges and labels, maxDets 100 / 300 / 1500."""
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(copy.deepcopy(preds)), "bbox")
        ev.params.maxDets = [100, 300, 1500]
        ev.params.areaRng = [[0 ** 2, 1e5 ** 2], [0 ** 2, 8 ** 2], [8 ** 2, 16 ** 2], [16 ** 2, 32 ** 2],
                             [32 ** 2, 1e5 ** 2]]
        ev.params.areaRngLbl = ["all", "verytiny", "tiny", "small", "medium"]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def at_1500(ev: COCOeval, ap: bool, area: str) -> float:
    """Mean AP (or AR) over IoU .50:.95 in one area at maxDets 1500, as AI-TOD reads it; stock summarize()
    reads the 'all' AP at maxDets 100 and has no 'verytiny' / 'tiny' rows."""
    a = ev.params.areaRngLbl.index(area)
    s = ev.eval["precision"][:, :, :, a, -1] if ap else ev.eval["recall"][:, :, a, -1]
    s = s[s > -1]
    return float(s.mean()) if s.size else -1.0


def test_aitod_protocol_equals_cocoeval_configured_by_hand():
    gt = aitod_gt()
    preds = perturb(gt, seed=1, jitter=0.1, drop=0.15, extra=3, wrong_cls=0.1)
    ours = coco_eval(gt, preds, protocol="aitod")
    ev = aitod_cocoeval(gt, preds)
    st = ev.stats  # summarize(): [1], [2] and the 'small' / 'medium' rows read maxDets[2] = 1500
    assert [ours[k] for k in ("AP50", "AP75", "AP_s16", "AP_m32")] == pytest.approx(
        [st[1], st[2], st[3], st[4]], abs=1e-12)
    assert [ours[k] for k in ("AR100", "AR300", "AR1500", "AR_s16", "AR_m32")] == pytest.approx(
        [st[6], st[7], st[8], st[9], st[10]], abs=1e-12)
    assert st[5] == -1 and st[11] == -1  # no 'large' row: nothing is scored outside the four buckets
    for key, ap, area in (("AP", True, "all"), ("AP_vt", True, "verytiny"), ("AP_t", True, "tiny"),
                          ("AR_vt", False, "verytiny"), ("AR_t", False, "tiny")):
        assert ours[key] == pytest.approx(at_1500(ev, ap, area), abs=1e-12), key
    for area in ("verytiny", "tiny", "small", "medium"):  # every bucket has ground truth and a real score
        assert 0.05 < at_1500(ev, True, area) < 0.95, area
    assert ours["AR100"] < ours["AR300"] < ours["AR1500"]  # the crowded image: maxDets matters
    for k, c in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        assert ours["per_class"][c]["AP"] == pytest.approx(float(p[p > -1].mean()), abs=1e-12)
    assert ours["stats"] == [ours[k] for k in ("AP", "AP50", "AP75", "AP_vt", "AP_t", "AP_s16", "AP_m32", "AR100",
                                               "AR300", "AR1500", "AR_vt", "AR_t", "AR_s16", "AR_m32")]
    assert "APs" not in ours and "AR1" not in ours  # COCO's buckets and maxDets are not mixed in
    empty = coco_eval(gt, [], protocol="aitod")
    assert empty["AP"] == empty["AP_vt"] == empty["AP_m32"] == empty["AR1500"] == 0.0
    with pytest.raises(ValueError, match="protocol"):
        coco_eval(gt, preds, protocol="voc")
