"""benchmarks/per_class_ap.py: per-class pycocotools AP of a results file."""
from __future__ import annotations

import json

import pytest

from benchmarks.per_class_ap import main, per_class_ap
from utils.eval.coco import load_gt


def gt_file(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50, 50, 10, 30], "area": 300, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 60, 30, 12], "area": 360, "iscrowd": 0}]
    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100},
                     {"id": 2, "file_name": "b.png", "width": 100, "height": 100}],
          "annotations": anns,
          "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "bus"}, {"id": 9, "name": "truck"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path, anns


def test_each_class_scored_alone(tmp_path, capsys):
    path, anns = gt_file(tmp_path)
    # both cars found exactly; the bus predicted as a car, at a lower score than the true cars
    preds = [{"image_id": a["image_id"], "category_id": 3, "bbox": a["bbox"], "score": 0.9} for a in anns[::2]]
    preds.append({"image_id": 1, "category_id": 3, "bbox": anns[1]["bbox"], "score": 0.5})
    got = per_class_ap(load_gt(path), preds)
    assert got["car"] == pytest.approx((1.0, 1.0))  # the false positive ranks below every true one
    assert got["bus"] == (0.0, 0.0) and got["truck"] == (-1.0, -1.0)  # missed; no val box at all
    # the bus found, scored above the cars: its class alone is perfect, the car ranking unchanged
    preds.append({"image_id": 1, "category_id": 7, "bbox": anns[1]["bbox"], "score": 0.95})
    got = per_class_ap(load_gt(path), preds)
    assert got["bus"] == pytest.approx((1.0, 1.0)) and got["car"] == pytest.approx((1.0, 1.0))
    pred_path = tmp_path / "p.json"
    pred_path.write_text(json.dumps(preds))
    main([str(path), str(pred_path), "--names", "ours"])
    assert "| car | 2 | 1.000 / 1.000 |" in capsys.readouterr().out
