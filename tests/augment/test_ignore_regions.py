"""Ignore regions (COCO iscrowd=1) through the training pipeline: carried as rows of IGNORE_CLASS that move
with their pixels through every augmentation, never filtered as objects, never tile centres, never pasted."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.augment.test_augment import COLOURS, TOL, colour_mask, extent, scene
from utils.augment.copy_paste import copy_paste_small
from utils.augment.crops import crop_boxes
from utils.augment.transforms import classify_kept
from utils.boxes import IGNORE_CLASS
from utils.data.dataset import CocoDataset

CROWD = 3  # in every scene the object of colour 3 is annotated iscrowd=1


def write_crowd_coco(root: Path, n: int = 6, size: int = 96, width: int | None = None, objects: int = 5,
                     seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img, boxes = scene(size, width or size, rng, n=objects, margin=5, side=(6, 20), gap=10)
        cv2.imwrite(str(root / "img" / f"{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": width or size, "height": size})
        for k, x1, y1, x2, y2 in boxes.tolist():
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(k) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": int(k == CROWD)})
    cats = [{"id": k + 1, "name": f"c{k}"} for k in range(len(COLOURS))]
    js = root / "instances.json"
    js.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return js


def _xyxy(labels: np.ndarray) -> np.ndarray:
    return np.concatenate([labels[:, :1], labels[:, 1:3] - labels[:, 3:5] / 2, labels[:, 1:3] + labels[:, 3:5] / 2], 1)


@pytest.mark.parametrize("mode", ["mosaic", "letterbox", "tile", "tile-mosaic"])
def test_ignore_regions_move_with_their_pixels(tmp_path, mode):
    tile = mode.startswith("tile")
    js = write_crowd_coco(tmp_path, width=300 if tile else 120, size=200 if tile else 96, objects=7 if tile else 5)
    hyp = dict(mosaic=float(mode.endswith("mosaic")), scale=0.3, translate=0.1, degrees=3.0, shear=2.0,
               fliplr=0.5, flipud=0.5, tile=float(tile), crowd_ignore=1.0)
    ds = CocoDataset(str(js), str(tmp_path / "img"), imgsz=128, augment=True, hyp=hyp, seed=3, stride=8,
                     verbose=False)
    assert ds.report.ignore_regions == 6 and ds.report.problems == 0
    assert all(CROWD not in b[:, 0] for b in ds.boxes)  # not an object anywhere
    seen = 0
    for i in range(16):
        kept0 = ds.box_stats()["kept"]
        img, labels, _, _ = ds[i % len(ds)]
        lb = _xyxy(labels.numpy())
        assert CROWD not in lb[:, 0]
        assert ds.box_stats()["kept"] - kept0 == (lb[:, 0] != IGNORE_CLASS).sum()  # regions are not counted
        bgr = np.ascontiguousarray(img.numpy().transpose(1, 2, 0)[..., ::-1])
        regions = lb[lb[:, 0] == IGNORE_CLASS]
        seen += len(regions)
        for b in regions:  # each region sits on the crowd's pixels
            x1, y1 = (int(max(v - 5, 0)) for v in b[1:3])
            x2, y2 = (int(np.ceil(v + 5)) for v in b[3:5])
            got = extent(bgr[y1:y2, x1:x2], CROWD)
            assert got is not None
            np.testing.assert_allclose(got + [x1, y1, x1, y1], b[1:], atol=TOL + 1.0)
        # and every crowd in view has its region: they are kept while any part is visible
        n, _, stats, _ = cv2.connectedComponentsWithStats(colour_mask(bgr, CROWD).astype(np.uint8))
        for x, y, w, h, area in stats[1:]:
            if area >= 4:
                assert ((abs(regions[:, 1] - x) <= TOL + 1) & (abs(regions[:, 2] - y) <= TOL + 1)).any(), (x, y)
    assert seen > 4


def test_evaluation_and_crowd_ignore_0_never_see_regions(tmp_path):
    js = write_crowd_coco(tmp_path)
    args = (str(js), str(tmp_path / "img"), 96)
    val = CocoDataset(*args, augment=False, verbose=False)
    drop = CocoDataset(*args, augment=True, hyp=dict(mosaic=0.0, crowd_ignore=0.0), verbose=False)
    keep = CocoDataset(*args, augment=True, hyp=dict(mosaic=0.0), verbose=False)  # honoured by default
    single = CocoDataset(*args, augment=True, hyp=dict(mosaic=0.0), single_cls=True, verbose=False)
    for i in range(len(val)):
        assert (val[i][1][:, 0] >= 0).all() and len(val[i][1]) == 4
        assert (drop[i][1][:, 0] >= 0).all() and len(drop[i][1]) == 4
        assert sorted(keep[i][1][:, 0].tolist()).count(IGNORE_CLASS) == 1
        assert sorted(single[i][1][:, 0].tolist()) == [IGNORE_CLASS, 0, 0, 0, 0]


def test_tiles_are_not_centred_on_ignore_regions(tmp_path):
    """One object at the far left, one large crowd region at the far right of a 1000 px image: a 64 px tile
    holds the object whenever it is centred on a box (0.9 of draws); were the region a centre, half as often."""
    img = np.zeros((200, 1000, 3), np.uint8)
    img[90:102, 20:32] = 255
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 90, 12, 12], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [800, 50, 150, 100], "iscrowd": 1}]
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), img)
    js = tmp_path / "a.json"
    js.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 1000, "height": 200}],
                              "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    ds = CocoDataset(str(js), str(tmp_path / "img"), imgsz=64, augment=True, hyp=dict(tile=1.0, mosaic=0.0),
                     seed=0, verbose=False)
    draws = [ds.load_item(0, tile=True)[1] for _ in range(150)]
    with_object = np.mean([(b[:, 0] == 0).any() for b in draws])
    with_region = np.mean([(b[:, 0] == IGNORE_CLASS).any() for b in draws])
    assert with_object > 0.8 and with_region < 0.1


def test_box_filters_keep_regions_while_any_part_is_in_view():
    # a region cut to 5 % of its area and one 0.5 px narrow: objects like them are dropped, regions kept
    new = np.array([[0, 0, 2, 10], [0, 0, 0.5, 10], [0, 0, 2, 10], [0, 0, 0.5, 10], [5, 5, 5, 9]], np.float32)
    before = np.array([[40, 10], [0.5, 10], [40, 10], [0.5, 10], [4, 4]], np.float32)
    ignore = np.array([True, True, False, False, True])
    keep, small, cut = classify_kept(new, before, 1.0, min_box_px=1.0, ignore=ignore)
    assert keep.tolist() == [True, True, False, False, False] and (small, cut) == (1, 1)
    boxes = np.array([[IGNORE_CLASS, 0, 0, 100, 100], [2, 60, 60, 62, 62]], np.float32)
    out, small, cut = crop_boxes(boxes, (95, 95, 159, 159))  # the region's 5x5 px corner is in view
    assert out.tolist() == [[IGNORE_CLASS, 0, 0, 5, 5]] and (small, cut) == (0, 0)


def test_copy_paste_neither_pastes_regions_nor_pastes_onto_them():
    donor = np.full((64, 64, 3), 30, np.uint8)
    dboxes = np.array([[IGNORE_CLASS, 5, 5, 15, 15], [1, 30, 30, 40, 40]], np.float32)
    pasted = 0
    for seed in range(10):
        img = np.full((80, 120, 3), 128, np.uint8)
        boxes = np.array([[IGNORE_CLASS, 0, 0, 100, 80]], np.float32)  # all but a 20 px strip at the right
        _, new = copy_paste_small(img, boxes.copy(), donor, dboxes, np.random.default_rng(seed), max_side=32)
        assert np.array_equal(new[:1], boxes) and (new[1:, 0] == 1).all()
        assert (new[1:, 1] >= 100).all()
        pasted += len(new) - 1
    assert pasted > 0
