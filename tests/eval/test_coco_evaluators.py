"""faster-coco-eval's COCOeval_faster (used for speed, issue 37 item 8) against pycocotools' COCOeval (the
reference): the same precision / recall / score arrays on constructed and real-ish sets, crowd boxes, area
ranges (COCO's and AI-TOD's, ends inclusive), maxDets, score ties, use_cats and image subsets."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.eval.test_metrics import perturb, synth_gt
from utils.eval.coco import cocoeval_class, coco_eval
from utils.eval.protocols import PROTOCOLS

pytest.importorskip("faster_coco_eval")
TOL = 1e-6  # what the issue asks; the arrays agree to 1 ulp (asserted below at 1e-12)
ROOT = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("SMALLDET_DATASETS") or ROOT.parent / "shared" / "datasets")


def dense_gt(seed: int, n_img: int = 3, n_box: int = 150, crowd: float = 0.1) -> dict:
    """Boxes of 2-48 px on 600 px images, some crowd, and a box exactly on each AI-TOD/COCO bucket border."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, n_img + 1):
        images.append({"id": i, "width": 600, "height": 600, "file_name": f"{i}.jpg"})
        wh, xy = rng.uniform(2, 48, (n_box, 2)), rng.uniform(0, 550, (n_box, 2))
        for j in range(n_box):
            w, h = float(wh[j, 0]), float(wh[j, 1])
            anns.append({"image_id": i, "category_id": int(rng.integers(1, 4)), "bbox": [*map(float, xy[j]), w, h],
                         "area": w * h, "iscrowd": int(rng.random() < crowd)})
        for side in (8.0, 16.0, 32.0, 96.0):  # area == range end: inclusive on both sides in pycocotools
            anns.append({"image_id": i, "category_id": 1, "bbox": [10.0, 10.0, side, side], "area": side * side,
                         "iscrowd": 0})
    images.append({"id": n_img + 1, "width": 600, "height": 600, "file_name": "empty.jpg"})  # no ground truth
    for k, a in enumerate(anns, 1):
        a["id"] = k
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 4)]  # 4: no ground truth, but detections
    return {"images": images, "annotations": anns, "categories": cats}


def dense_preds(gt: dict, seed: int) -> list[dict]:
    """Jittered copies (some of the wrong class), false boxes, scores rounded to one digit: many ties."""
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        if rng.random() < 0.85:
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 0.12, 4) * [w, h, w, h]
            cat = a["category_id"] if rng.random() < 0.9 else int(rng.integers(1, 5))
            out.append({"image_id": a["image_id"], "category_id": cat, "score": round(float(rng.random()), 1),
                        "bbox": [x + j[0], y + j[1], max(w + j[2], 1.0), max(h + j[3], 1.0)]})
    for im in gt["images"]:
        for _ in range(60):
            out.append({"image_id": im["id"], "category_id": int(rng.integers(1, 5)),
                        "score": round(float(rng.random()), 1),
                        "bbox": [*map(float, rng.uniform(0, 550, 2)), *map(float, rng.uniform(2, 48, 2))]})
    return out


def run(cls: type, gt: dict, preds: list[dict], areas: list, max_dets: list, use_cats: int = 1,
        img_ids: list | None = None) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        ev = cls(cg, cg.loadRes(copy.deepcopy(preds)), "bbox")
        ev.params.areaRng, ev.params.areaRngLbl = areas, [str(i) for i in range(len(areas))]
        ev.params.maxDets, ev.params.useCats = max_dets, use_cats
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
    return ev.eval


def _sets() -> dict:
    # (tests/eval/test_metrics.py compares coco_eval, faster-coco-eval by default, with pycocotools on aitod_gt)
    sets = {"dense-crowd-ties": (dense_gt(0), None), "synthetic": (synth_gt(seed=1), None)}
    ac = DATASETS / "aerial-cars" / "annotations" / "instances_val.json"
    if ac.is_file():  # real box sizes and counts, jittered predictions
        sets["aerial-cars-val"] = (json.loads(ac.read_text()), None)
    return sets


SETS = _sets()
CONFIGS = {"coco": (list(map(list, PROTOCOLS["coco"].area_ranges.values())), [1, 10, 100], 1, None),
           "aitod": (list(map(list, PROTOCOLS["aitod"].area_ranges.values())), [100, 300, 1500], 1, None),
           "no-cats": ([[0, 1e10], [0, 256]], [10, 100], 0, None),
           "subset": ([[0, 1e10], [64, 1024]], [5, 50], 1, [1, 3, 4])}


@pytest.mark.parametrize("name", list(SETS))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_faster_coco_eval_equals_pycocotools(name, config):
    from faster_coco_eval import COCOeval_faster
    gt = SETS[name][0]
    preds = dense_preds(gt, seed=7) if name == "dense-crowd-ties" else perturb(
        gt, seed=3, jitter=0.1, drop=0.15, extra=3, dup=1, wrong_cls=0.1)
    areas, max_dets, use_cats, img_ids = CONFIGS[config]
    if img_ids is not None:
        img_ids = [i for i in img_ids if i in {im["id"] for im in gt["images"]}] or [gt["images"][0]["id"]]
    ref = run(COCOeval, gt, preds, areas, max_dets, use_cats, img_ids)
    fast = run(COCOeval_faster, gt, preds, areas, max_dets, use_cats, img_ids)
    for key in ("precision", "recall", "scores"):
        a, b = np.asarray(ref[key]), np.asarray(fast[key])
        assert a.shape == b.shape, key
        assert np.abs(a - b).max() <= 1e-12, key  # well inside the 1e-6
    assert (np.asarray(ref["precision"]) > 0).any()  # a case with real scores, not all -1 / 0


def test_crowd_boxes_absorb_duplicates_in_both():
    """A crowd box matches any number of detections (they are ignored, not false positives)."""
    gt = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500,
                           "iscrowd": 1},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "area": 400,
                           "iscrowd": 0}]}
    preds = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20], "score": 0.9 - k / 100} for k in range(5)]
    preds.append({"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.5})
    for ev in ("pycocotools", "faster-coco-eval"):
        assert coco_eval(gt, preds, evaluator=ev)["AP"] == pytest.approx(1.0, abs=TOL), ev


@pytest.mark.parametrize("protocol", ["coco", "aitod"])
def test_coco_eval_figures_are_the_same_with_either_evaluator(protocol):
    gt = dense_gt(1)
    preds = dense_preds(gt, seed=2)
    ref = coco_eval(gt, preds, protocol=protocol, evaluator="pycocotools")
    fast = coco_eval(gt, preds, protocol=protocol, evaluator="faster-coco-eval")
    assert set(ref) == set(fast)
    for k in PROTOCOLS[protocol].figures:
        assert fast[k] == pytest.approx(ref[k], abs=TOL), k
    for c in ref["per_class"]:
        assert fast["per_class"][c] == pytest.approx(ref["per_class"][c], abs=TOL), c
    for c in ref["pr50"]:
        np.testing.assert_allclose(fast["pr50"][c], ref["pr50"][c], atol=TOL, rtol=0)


def test_coco_eval_does_not_match_in_pythons_loops_by_default(monkeypatch):
    """Dense evaluation: pycocotools' per-image Python matching (~127 s per image of 10,000 boxes) is not run."""
    import pycocotools.cocoeval as pc

    def slow(*a, **k):
        raise AssertionError("pycocotools' COCOeval.evaluateImg ran")

    monkeypatch.setattr(pc.COCOeval, "evaluateImg", slow)
    gt = dense_gt(3, n_img=1, n_box=50)
    assert coco_eval(gt, dense_preds(gt, 4), protocol="aitod")["AP"] > 0
    with pytest.raises(AssertionError, match="evaluateImg ran"):  # the reference stays reachable
        coco_eval(gt, dense_preds(gt, 4), evaluator="pycocotools")
    with pytest.raises(ValueError, match="evaluator must be one of"):
        cocoeval_class("fast")
