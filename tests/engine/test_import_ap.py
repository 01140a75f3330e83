"""Imported checkpoints score the AP their own code measured (../shared/fixtures/reference.json), by our val.py
with the settings of that code: YOLOv5's val.py pads rect batches by half a stride, Ultralytics' predict keeps
one class per box. benchmarks/import_parity.py records the same figures (and those of our defaults)."""
from __future__ import annotations

import json

import pytest

from tests.engine.test_foreign import FIXTURES, fixture
from utils.data.dataset import CocoDataset


def test_rect_pad_grows_each_batch_shape_by_half_a_stride(tiny_coco):
    root = tiny_coco.parent  # 64 x 64 images at imgsz 64, stride 32: 64 without pad, ceil(2 + 0.5) * 32 with it
    args = (str(root / "annotations" / "instances_val.json"), str(root / "images" / "val"), 64, 4, 32)
    plain = CocoDataset(*args, rect=True, verbose=False)
    padded = CocoDataset(*args, rect=True, verbose=False, rect_pad=0.5)
    assert plain.batch_shapes.tolist() == [[64, 64]]
    assert padded.batch_shapes.tolist() == [[96, 96]]
    img, _, _, meta = padded[0]
    assert tuple(img.shape[1:]) == (96, 96) and meta["pad"] == (16.0, 16.0)


def test_val_flags_reach_validate():
    import val
    opt = val.parse_opt(["--weights", "w.pt", "--single-label", "--rect-pad", "0.5"])
    assert opt.multi_label is False and opt.rect_pad == 0.5
    opt = val.parse_opt(["--weights", "w.pt"])
    assert opt.multi_label is True and opt.rect_pad == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name, settings", [("yolov5n-shapes.pt", {"rect_pad": 0.5}),
                                            ("yolov5nu-shapes.pt", {"multi_label": False})])
def test_imported_checkpoint_scores_the_originals_ap(tmp_path, name, settings):
    import val
    weights = fixture(name)
    ref = json.loads((FIXTURES / "reference.json").read_text())[name]["coco_eval"]
    r = val.run(data="data/shapes.yaml", weights=str(weights), imgsz=256, conf_thres=0.001, iou_thres=0.6,
                max_det=300, plots=False, verbose=False, project=str(tmp_path), name="v", workers=0, **settings)
    assert abs(r["AP"] - ref["AP"]) <= 0.001, (r["AP"], ref["AP"])
    assert abs(r["AP50"] - ref["AP50"]) <= 0.001, (r["AP50"], ref["AP50"])
