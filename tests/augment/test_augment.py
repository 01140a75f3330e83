"""Augmentation keeps boxes on their pixels, and small boxes are never dropped silently.

Each object is a filled rectangle of a colour no other object in the image has, on black;
after a transform, the extent of that colour's pixels must equal the transformed box.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.augment.transforms import classify_kept, flip_lr, flip_ud, letterbox, mosaic4, random_affine
from utils.data.dataset import CocoDataset, create_dataloader
from utils.augment.crops import class_balance_weights, crop_boxes, tile_window

# BGR colours with every channel 0 or 255: told apart from each other, black and the pad grey
# (114) by thresholding each channel at 128, even after interpolation blurs the edges.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 255, 255)]
TOL = 2.0  # px: interpolation at the edges and the pixel-centre convention of cv2's warps


def colour_mask(img: np.ndarray, k: int) -> np.ndarray:
    return ((img >= 128) == (np.array(COLOURS[k]) >= 128)).all(2)


def extent(img: np.ndarray, k: int) -> np.ndarray | None:
    """[x1, y1, x2, y2] (pixel edges) of colour k, None when absent."""
    ys, xs = np.nonzero(colour_mask(img, k))
    return None if len(xs) == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def scene(h: int, w: int, rng: np.random.Generator, n: int = 4, margin: int = 2, side=(4, 20), gap: int = 6):
    """Black image with n rectangles >= gap px apart and >= margin px from the edges; class k = colour k."""
    img = np.zeros((h, w, 3), np.uint8)
    boxes: list[list[float]] = []
    while len(boxes) < n:
        bw, bh = (int(v) for v in rng.integers(side[0], side[1] + 1, 2))
        x, y = int(rng.integers(margin, w - bw - margin + 1)), int(rng.integers(margin, h - bh - margin + 1))
        if all(x >= b[3] + gap or x + bw + gap <= b[1] or y >= b[4] + gap or y + bh + gap <= b[2] for b in boxes):
            boxes.append([len(boxes), x, y, x + bw, y + bh])
    for k, x1, y1, x2, y2 in boxes:
        img[int(y1):int(y2), int(x1):int(x2)] = COLOURS[int(k)]
    return img, np.array(boxes, np.float32)


def assert_boxes_on_pixels(img: np.ndarray, boxes: np.ndarray, tol: float = TOL) -> None:
    """Each box equals its colour's pixel extent. A sliver under 4 px (a tilted box cut by the
    frame edge) only has to contain its pixels: its thin tip covers less than half of each pixel."""
    for b in boxes:
        got = extent(img, int(b[0]))
        assert got is not None, f"class {int(b[0])} has a box {b[1:]} but no pixels"
        if min(b[3] - b[1], b[4] - b[2]) < 4:
            assert (got[:2] >= b[1:3] - tol).all() and (got[2:] <= b[3:5] + tol).all(), (b, got)
        else:
            np.testing.assert_allclose(got, b[1:], atol=tol, err_msg=f"class {int(b[0])}")


class FixedDraws:
    """Stands in for np.random.Generator in random_affine: uniform() returns the given values in turn."""

    def __init__(self, *values):
        self.values = list(values)

    def uniform(self, lo, hi, size=None):
        v = self.values.pop(0)
        return np.array(v, float) if size else float(v)


def test_scene_helper_sees_every_object():
    img, boxes = scene(64, 96, np.random.default_rng(0))
    assert_boxes_on_pixels(img, boxes, tol=0)
    moved = boxes.copy()
    moved[0, 1:] += 3
    with pytest.raises(AssertionError):  # the check notices a box 3 px off
        assert_boxes_on_pixels(img, moved)


@pytest.mark.parametrize("shape, new, scaleup", [((60, 100), 128, True), ((100, 60), (96, 160), True),
                                                 ((60, 100), 256, False), ((150, 90), 64, True)])
def test_letterbox(shape, new, scaleup):
    img, boxes = scene(*shape, np.random.default_rng(1), side=(8, 24))
    out, (rw, rh), (pw, ph) = letterbox(img, new, scaleup=scaleup)
    nh, nw = (new, new) if isinstance(new, int) else new
    assert out.shape == (nh, nw, 3)
    b = boxes.copy()
    b[:, [1, 3]] = b[:, [1, 3]] * rw + pw
    b[:, [2, 4]] = b[:, [2, 4]] * rh + ph
    assert_boxes_on_pixels(out, b)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("kw", [dict(scale=0.5, translate=0.2), dict(degrees=30.0, scale=0.3),
                                dict(shear=15.0, translate=0.1),
                                dict(degrees=45.0, shear=5.0, scale=0.4, translate=0.25)])
def test_random_affine(kw, seed):
    """Boxes cut by the frame edge after a rotation span only the visible part of the object."""
    img, boxes = scene(96, 128, np.random.default_rng(seed), n=5, side=(8, 24))
    out, new, (small, cut) = random_affine(img, boxes, np.random.default_rng(100 + seed), (112, 112), **kw)
    assert out.shape == (112, 112, 3)
    assert len(new) + small + cut == len(boxes)  # every box kept or counted
    assert_boxes_on_pixels(out, new)
    assert (new[:, [1, 3]] >= 0).all() and (new[:, [1, 3]] <= 112).all() and (new[:, [2, 4]] <= 112).all()


@pytest.mark.parametrize("angle", [90.0, -90.0, 180.0])
def test_random_affine_quarter_turns(angle):
    img, boxes = scene(80, 80, np.random.default_rng(7), n=4, side=(6, 20))
    out, new, dropped = random_affine(img, boxes, FixedDraws(angle), degrees=180.0)
    assert dropped == (0, 0) and len(new) == len(boxes)
    assert_boxes_on_pixels(out, new, tol=1.0)
    if angle == 180.0:  # a half turn about the centre mirrors both axes
        np.testing.assert_allclose(new[:, 1:], 80 - boxes[:, [3, 4, 1, 2]], atol=1e-3)


def test_affine_cut_boxes_are_counted():
    img = np.zeros((64, 64, 3), np.uint8)
    img[2:12, 2:12] = COLOURS[0]
    img[30:40, 30:40] = COLOURS[1]
    boxes = np.array([[0, 2, 2, 12, 12], [1, 30, 30, 40, 40]], np.float32)
    # translate the output centre to x = 0.5 * 64 - 0.45 * 64: the first box leaves the frame
    out, new, (small, cut) = random_affine(img, boxes, FixedDraws([0.05, 0.5]), translate=0.45)
    assert (len(new), small, cut) == (1, 0, 1) and new[0, 0] == 1
    assert_boxes_on_pixels(out, new)


def test_flips():
    img, boxes = scene(50, 70, np.random.default_rng(3))
    for flip in (flip_lr, flip_ud):
        out, b = flip(img, boxes)
        assert_boxes_on_pixels(out, b, tol=0)
        back, b2 = flip(out, b)
        assert np.array_equal(back, img) and np.allclose(b2, boxes)


@pytest.mark.parametrize("seed", range(6))
def test_mosaic4(seed):
    rng = np.random.default_rng(seed)
    sizes = [(50, 70), (64, 64), (40, 90), (80, 30)]
    imgs, boxes = [], []
    for k, (h, w) in enumerate(sizes):  # one object per image, colour = class = image index
        im, b = scene(h, w, rng, n=1, side=(6, 16), margin=0)
        im[colour_mask(im, 0)] = COLOURS[k]
        b[:, 0] = k
        imgs.append(im)
        boxes.append(b)
    canvas, out = mosaic4(imgs, boxes, 64, rng)
    assert canvas.shape == (128, 128, 3)
    for k in range(4):
        b = out[out[:, 0] == k]
        visible = b[(b[:, 3] > b[:, 1]) & (b[:, 4] > b[:, 2])]
        if len(visible):
            assert_boxes_on_pixels(canvas, visible, tol=0)
        else:  # cut off by the canvas edge (zero-size box or none): no pixels either
            assert extent(canvas, k) is None


def test_tile_crop_matches_pixels():
    rng = np.random.default_rng(5)
    img, boxes = scene(300, 500, rng, n=7, side=(6, 40))
    for _ in range(20):
        win = tile_window(img.shape[:2], boxes[:, 1:5], 128, rng)
        assert win[2] - win[0] == 128 and win[3] - win[1] == 128
        crop = img[win[1]:win[3], win[0]:win[2]]
        new, small, cut = crop_boxes(boxes, win, min_box_px=1.0)
        assert_boxes_on_pixels(crop, new, tol=0)
        seen = {k for k in range(7) if extent(crop, k) is not None}
        assert set(new[:, 0].astype(int)) <= seen and len(seen) - len(new) <= small + cut  # nothing unaccounted


def test_class_balance_weights():
    counts = np.array([100, 4, 0])  # a class absent from the split counts as 1, not a division by zero
    classes = np.array([0, 0, 1, 2])
    np.testing.assert_allclose(class_balance_weights(classes, counts, 0.0), [1, 1, 1, 1])
    np.testing.assert_allclose(class_balance_weights(classes, counts, 0.5), [0.1, 0.1, 0.5, 1.0])
    # power 1: every class carries the same total weight over the split
    w = class_balance_weights(np.repeat([0, 1], [100, 4]), counts, 1.0)
    assert np.isclose(w[:100].sum(), w[100:].sum())


def test_tile_window_centres_on_the_weighted_box():
    rng = np.random.default_rng(0)
    boxes = np.array([[10, 10, 20, 20], [400, 300, 420, 310], [900, 50, 910, 60]], float)
    for k in range(3):
        w = np.eye(3)[k] + 1e-12
        for _ in range(10):
            x0, y0, x1, y1 = tile_window((500, 1000), boxes, 100, rng, background=0.0, weights=w)
            inside = (boxes[:, 0] >= x0) & (boxes[:, 2] <= x1) & (boxes[:, 1] >= y0) & (boxes[:, 3] <= y1)
            assert inside.tolist() == [j == k for j in range(3)]


@pytest.mark.parametrize("power, lo, hi", [(0.0, 0.0, 0.2), (1.0, 0.35, 0.55)])
def test_tile_balance_shows_rare_classes_more(tmp_path, power, lo, hi):
    """Nine boxes of one class and one of another, far apart in a large image: a tile holds the
    rare one when it is the drawn centre, 0.9 / 10 of draws without balance, 0.9 / 2 with power 1."""
    img = np.zeros((600, 1000, 3), np.uint8)
    anns = []
    for j in range(10):
        x, y = 40 + (j % 5) * 200, 60 + (j // 5) * 300
        img[y:y + 12, x:x + 12] = 255
        anns.append({"id": j + 1, "image_id": 1, "category_id": 2 if j == 7 else 1, "bbox": [x, y, 12, 12],
                     "iscrowd": 0})
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), img)
    js = tmp_path / "a.json"
    js.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 1000, "height": 600}],
                              "annotations": anns, "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}]}))
    hyp = dict(tile=1.0, tile_balance=power, mosaic=0.0)
    ds = CocoDataset(str(js), str(tmp_path / "img"), imgsz=64, augment=True, hyp=hyp, seed=1, verbose=False)
    assert ds.class_counts.tolist() == [9, 1]
    rare = np.mean([(ds.load_item(0)[1][:, 0] == 1).any() for _ in range(400)])
    assert lo < rare < hi


def write_coco(root: Path, n: int = 6, size: int = 96, seed: int = 0, side=(6, 20), objects: int = 4,
               width: int | None = None) -> Path:
    """Scenes as a COCO split (category id = colour index + 1); returns the json path."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img, boxes = scene(size, width or size, rng, n=objects, margin=5, side=side, gap=10)
        cv2.imwrite(str(root / "img" / f"{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": width or size, "height": size})
        for k, x1, y1, x2, y2 in boxes.tolist():
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(k) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    cats = [{"id": k + 1, "name": f"c{k}"} for k in range(len(COLOURS))]
    js = root / "instances.json"
    js.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return js


@pytest.mark.parametrize("mode", ["mosaic", "letterbox", "eval-rect", "tile", "tile-mosaic"])
def test_dataset_items_keep_boxes_on_pixels(tmp_path, mode):
    """The whole item path: mosaic or letterbox, native-resolution tiles of large images, affine,
    flips (HSV off: it changes the colours); and evaluation's rectangular letterbox."""
    tile = mode.startswith("tile")
    js = write_coco(tmp_path, width=300 if tile else 120, size=200 if tile else 96, objects=7 if tile else 4)
    hyp = dict(mosaic=float(mode.endswith("mosaic")), scale=0.3, translate=0.1, degrees=3.0, shear=2.0,
               fliplr=0.5, flipud=0.5, tile=float(tile))
    ds = CocoDataset(str(js), str(tmp_path / "img"), imgsz=128, augment=mode != "eval-rect", hyp=hyp, seed=3,
                     rect=mode == "eval-rect", batch_size=2, stride=8, verbose=False)
    for i in range(12):
        before = ds.box_stats()
        img, labels, _, _ = ds[i % len(ds)]
        after = ds.box_stats()
        dropped = sum(after[k] - before[k] for k in ("dropped_small", "dropped_cut"))
        if mode == "eval-rect":
            assert tuple(img.shape[1:]) == (104, 128)  # 96x120 -> 102x128, padded to a multiple of stride 8
        bgr = np.ascontiguousarray(img.numpy().transpose(1, 2, 0)[..., ::-1])
        lb = labels.numpy()
        xyxy = np.concatenate([lb[:, :1], lb[:, 1:3] - lb[:, 3:5] / 2, lb[:, 1:3] + lb[:, 3:5] / 2], 1)
        for b in xyxy:  # colours repeat across the mosaic's images: look only within 5 px of each box
            k = int(b[0])  # (objects are >= 10 px apart before a scale of >= 0.7)
            x1, y1 = (int(max(v - 5, 0)) for v in b[1:3])
            x2, y2 = (int(np.ceil(v + 5)) for v in b[3:5])
            got = extent(bgr[y1:y2, x1:x2], k)
            assert got is not None
            np.testing.assert_allclose(got + [x1, y1, x1, y1], b[1:], atol=TOL + 1.0)
        # an object in view without a label must have been counted as dropped (cut by a tile or
        # frame edge, or too small): none vanishes silently
        unlabelled = []
        for k in range(len(COLOURS)):
            n, _, stats, _ = cv2.connectedComponentsWithStats(colour_mask(bgr, k).astype(np.uint8))
            for x, y, w, h, area in stats[1:]:
                inside = x > 0 and y > 0 and x + w < bgr.shape[1] and y + h < bgr.shape[0]
                near = xyxy[(xyxy[:, 0] == k) & (abs(xyxy[:, 1] - x) <= 3) & (abs(xyxy[:, 2] - y) <= 3)]
                if inside and area >= 4 and not len(near):
                    unlabelled.append((k, x, y, w, h))
        assert len(unlabelled) <= dropped, (unlabelled, dropped)
    st = ds.box_stats()
    assert (st["kept"] > 0) == ds.augment and st["unreadable_images"] == 0


def test_min_box_threshold_is_a_hyperparameter():
    new = np.array([[0, 0, 0.8, 5], [0, 0, 3, 3], [0, 0, 10, 10]], np.float32)
    before = np.array([[0.8, 5], [3, 3], [10, 10]], np.float32)
    keep, small, cut = classify_kept(new, before, 1.0, min_box_px=1.0)
    assert keep.tolist() == [False, True, True] and (small, cut) == (1, 0)
    keep, small, cut = classify_kept(new, before, 1.0, min_box_px=0.5)
    assert keep.all() and (small, cut) == (0, 0)
    keep, small, cut = classify_kept(new, before, 1.0, min_box_px=4.0)
    assert keep.tolist() == [False, False, True] and (small, cut) == (2, 0)
    # through random_affine: a 3 px box at half scale is 1.5 px
    img = np.zeros((64, 64, 3), np.uint8)
    boxes = np.array([[0, 10, 10, 13, 13], [1, 30, 30, 50, 50]], np.float32)
    for thr, n_kept in ((1.0, 2), (2.0, 1)):
        _, out, (small, cut) = random_affine(img, boxes, FixedDraws(0.5), scale=0.5, min_box_px=thr)
        assert (len(out), small, cut) == (n_kept, 2 - n_kept, 0)


@pytest.mark.parametrize("workers", [0, 2])
def test_dropped_tiny_boxes_are_reported_by_the_loader(tmp_path, workers):
    """2-3 px boxes: kept with min_box_px 1, dropped and counted with min_box_px 4, across workers."""
    js = write_coco(tmp_path, n=8, side=(2, 3), objects=3)
    hyp = dict(mosaic=0.0, scale=0.0, translate=0.0, fliplr=0.5)
    totals = {}
    for thr in (1.0, 4.0):
        loader, ds = create_dataloader({"json": str(js), "images": str(tmp_path / "img")}, 96, 4,
                                       hyp={**hyp, "min_box_px": thr}, augment=True, workers=workers)
        n_labels = sum(len(t) for _, t, _, _ in loader)
        totals[thr] = (n_labels, ds.box_stats())
    n_boxes = 8 * 3
    assert totals[1.0][0] == n_boxes and totals[1.0][1]["kept"] == n_boxes
    assert totals[1.0][1]["dropped_small"] == 0
    assert totals[4.0][0] == 0 and totals[4.0][1]["dropped_small"] == n_boxes and totals[4.0][1]["kept"] == 0


def test_copy_paste_small_pastes_only_small_objects_onto_free_places():
    from utils.augment.copy_paste import copy_paste_small

    donor = np.full((96, 96, 3), 30, np.uint8)
    donor[10:20, 10:20] = (0, 0, 255)  # a 10 px red square: small enough
    donor[40:90, 40:90] = (255, 0, 0)  # a 50 px blue square: larger than max_side, never pasted
    dboxes = np.array([[3, 10, 10, 20, 20], [4, 40, 40, 90, 90]], np.float32)
    for seed in range(5):
        img = np.full((80, 120, 3), 128, np.uint8)
        boxes = np.array([[1, 60, 20, 100, 60]], np.float32)
        out, new = copy_paste_small(img, boxes.copy(), donor, dboxes, np.random.default_rng(seed), max_side=32)
        assert np.array_equal(new[:1], boxes) and len(new) == 2  # the one small object, added once
        c, x1, y1, x2, y2 = new[1]
        assert c == 3 and (x2 - x1, y2 - y1) == (10, 10)
        assert 0 <= x1 and x2 <= 120 and 0 <= y1 and y2 <= 80
        assert x2 <= 60 or x1 >= 100 or y2 <= 20 or y1 >= 60  # not on the existing object
        core = out[int(y1) + 1:int(y2) - 1, int(x1) + 1:int(x2) - 1].reshape(-1, 3)
        assert (core == (0, 0, 255)).all()  # the donor's pixels, not a blend
        assert (out == (255, 0, 0)).all(-1).sum() == 0  # the large object stayed behind
    img = np.zeros((40, 40, 3), np.uint8)
    none = copy_paste_small(img, np.zeros((0, 5), np.float32), donor, dboxes[1:], np.random.default_rng(0))
    assert len(none[1]) == 0  # a donor with no small objects changes nothing


def test_mixup_blends_with_a_beta_ratio_and_keeps_both_label_sets():
    from utils.augment.transforms import mixup

    a, b = np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 200, np.uint8)
    ba, bb = np.array([[0, 1, 1, 4, 4]], np.float32), np.array([[1, 2, 2, 6, 6], [0, 0, 0, 3, 3]], np.float32)
    out, boxes = mixup(a, ba, b, bb, np.random.default_rng(7))
    r = np.random.default_rng(7).beta(32.0, 32.0)  # the same draw, by hand
    assert 0.3 < r < 0.7
    assert np.abs(out.astype(float) - (100 * r + 200 * (1 - r))).max() <= 0.5 + 1e-9
    assert np.array_equal(boxes, np.concatenate((ba, bb)))


def test_hsv_gains_scale_hue_saturation_and_value_as_drawn():
    import cv2

    from utils.augment.transforms import augment_hsv

    rng0 = np.random.default_rng(3)
    img = np.stack(np.meshgrid(np.arange(20, 220, 10), np.arange(30, 230, 10)), -1)
    img = np.concatenate((img, np.full(img.shape[:2] + (1,), 90)), -1).astype(np.uint8)  # varied colours
    before = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(float)
    unchanged = img.copy()
    assert augment_hsv(unchanged, rng0) is unchanged and np.array_equal(unchanged, img)  # no gains: no-op
    out = augment_hsv(img.copy(), np.random.default_rng(3), 0.0, 0.0, 0.4)
    gain_v = np.random.default_rng(3).uniform(-1, 1, 3)[2] * 0.4 + 1
    after = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(float)
    assert gain_v != 1
    # value scaled by the drawn gain (uint8 rounding in both colour conversions: a few levels)
    assert np.abs(after[..., 2] - np.clip(before[..., 2] * gain_v, 0, 255)).max() <= 3
    assert np.abs(after[..., 0] - before[..., 0]).max() <= 3  # hue kept
    out_s = augment_hsv(img.copy(), np.random.default_rng(4), 0.0, 0.7, 0.0)
    gain_s = np.random.default_rng(4).uniform(-1, 1, 3)[1] * 0.7 + 1
    after_s = cv2.cvtColor(out_s, cv2.COLOR_BGR2HSV).astype(float)
    assert np.abs(after_s[..., 1] - np.clip(before[..., 1] * gain_s, 0, 255)).max() <= 4
