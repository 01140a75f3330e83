"""Sliced inference: window geometry, exact mapping of tile boxes back to the image, merging of
duplicates across window borders, the model-backed tile predictor and val.py --slice."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from torchvision.ops import box_iou

from utils.inference.slicing import (merge_detections, model_tile_predictor, sliced_inference, sliced_predict,
                                     slice_windows)


@pytest.mark.parametrize("h, w, size, overlap", [(1000, 1500, 640, 0.2), (641, 640, 640, 0.2), (2000, 333, 256, 0.5),
                                                 (700, 700, 100, 0.0), (97, 1203, 64, 0.9), (640, 640, 640, 0.2)])
def test_windows_cover_image_with_requested_overlap(h, w, size, overlap):
    wins = slice_windows(h, w, size, overlap)
    hits = np.zeros((h, w), np.int32)
    for x1, y1, x2, y2 in wins:
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert x2 - x1 == min(size, w) and y2 - y1 == min(size, h)  # full-size windows, never cut short
        hits[y1:y2, x1:x2] += 1
    assert hits.min() >= 1, "some pixels are in no window"
    xs, ys = sorted({x1 for x1, *_ in wins}), sorted({y1 for _, y1, *_ in wins})
    assert len(wins) == len(xs) * len(ys) and len(set(wins)) == len(wins)
    for starts, extent in ((xs, w), (ys, h)):
        assert starts[0] == 0 and starts[-1] + min(size, extent) == extent  # last window flush with the border
        for a, b in zip(starts, starts[1:]):
            assert a + size - b >= overlap * size - 1e-9, (a, b)  # neighbours share >= overlap * size px
            assert b > a


def test_small_image_is_one_window_and_bad_args():
    assert slice_windows(50, 40, 640, 0.2) == [(0, 0, 40, 50)]
    assert slice_windows(640, 100, 640, 0.5) == [(0, 0, 100, 640)]
    assert len(slice_windows(641, 100, 640, 0.2)) == 2
    for bad in (dict(size=0), dict(size=64, overlap=1.0), dict(size=64, overlap=-0.1), dict(size=12.5)):
        with pytest.raises(ValueError):
            slice_windows(100, 100, bad.get("size", 64), bad.get("overlap", 0.2))


def _coord_image(h: int, w: int) -> np.ndarray:
    """Every pixel holds its own (x, y): a tile tells the fake model exactly where it was cut."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack((x, y, np.zeros_like(x)), -1).astype(np.int32)


def _objects(h: int, w: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wh = rng.integers(4, 30, (n, 2))
    xy = rng.integers(0, [w - 30, h - 30], (n, 2))
    conf = rng.uniform(0.3, 0.99, (n, 1))
    return np.concatenate((xy, xy + wh, conf, rng.integers(0, 3, (n, 1))), 1).astype(np.float32)


def _fake_predictor(objects: np.ndarray, calls: list):
    """Returns, in tile pixels, the objects wholly inside each tile (as a detector would)."""
    def predict(tiles):
        calls.append(len(tiles))
        assert len({t.shape for t in tiles}) == 1, "a batch mixes tile shapes"
        out = []
        for t in tiles:
            ox, oy = int(t[0, 0, 0]), int(t[0, 0, 1])
            th, tw = t.shape[:2]
            assert t[-1, -1, 0] == ox + tw - 1 and t[-1, -1, 1] == oy + th - 1  # the tile is an unscaled crop
            inside = (objects[:, 0] >= ox) & (objects[:, 2] <= ox + tw) & (objects[:, 1] >= oy) & (
                objects[:, 3] <= oy + th)
            d = objects[inside].copy()
            d[:, [0, 2]] -= ox
            d[:, [1, 3]] -= oy
            out.append(torch.from_numpy(d))
        return out
    return predict


@pytest.mark.parametrize("merge", ["nms", "wbf"])
def test_boxes_map_back_exactly_and_duplicates_merge(merge):
    h, w = 700, 1000
    objs = _objects(h, w, 60)
    objs = objs[np.argsort(-objs[:, 4])]
    iou = box_iou(torch.from_numpy(objs[:, :4]), torch.from_numpy(objs[:, :4])).fill_diagonal_(0)
    keep = ~(torch.triu(iou) > 0.45).any(0).numpy()  # objects that NMS itself would not merge
    objs = objs[keep]
    calls: list = []
    out = sliced_inference(_coord_image(h, w), _fake_predictor(objs, calls), size=256, overlap=0.25, batch=3,
                           iou_thres=0.45, merge=merge).numpy()
    wins = slice_windows(h, w, 256, 0.25)
    assert sum(calls) == len(wins) and max(calls) == 3
    seen = sum(((objs[:, 0] >= x1) & (objs[:, 2] <= x2) & (objs[:, 1] >= y1) & (objs[:, 3] <= y2)).sum()
               for x1, y1, x2, y2 in wins)
    assert seen > len(objs), "the test should see some objects in two windows"
    assert out.shape == objs.shape  # every object once: duplicates from overlapping windows merged
    order = lambda a: a[np.lexsort(a[:, :4].T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(out), order(objs), atol=1e-4)


def test_merge_nms_and_wbf_on_a_border_duplicate():
    # the same car seen by two windows, slightly differently, plus a different class on top of it
    det = torch.tensor([[85.0, 10, 95, 20, 0.9, 1], [86.0, 11, 96, 21, 0.6, 1], [85.0, 10, 95, 20, 0.5, 0],
                        [300.0, 300, 310, 310, 0.4, 1]])
    nms = merge_detections(det, 0.45, "nms")
    assert torch.equal(nms, det[[0, 2, 3]])  # the best of the pair stays, other class and far box untouched
    wbf = merge_detections(det, 0.45, "wbf")
    assert len(wbf) == 3
    fused = wbf[wbf[:, 5] == 1][0]
    expect = (det[0, :4] * 0.9 + det[1, :4] * 0.6) / 1.5
    assert torch.allclose(fused[:4], expect) and fused[4] == pytest.approx(0.9)
    assert torch.equal(wbf[wbf[:, 4] == 0.4][0], det[3])  # a lone box stays as it is
    assert len(merge_detections(det, 0.45, "nms", agnostic=True)) == 2  # classes merged when agnostic
    assert len(merge_detections(det, 0.45, "nms", max_det=1)) == 1
    assert merge_detections(torch.zeros(0, 6)).shape == (0, 6)
    with pytest.raises(ValueError, match="mode"):
        merge_detections(det, 0.45, "mean")


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _merge_by_hand(det: list[list[float]], thr: float, mode: str) -> list[list[float]]:
    """Greedy class-aware NMS, best first; for WBF each suppressed box joins the best kept box of
    its own class that it overlaps, and a kept box becomes its cluster's confidence-weighted mean."""
    order = sorted(range(len(det)), key=lambda i: -det[i][4])
    kept: list[int] = []
    for i in order:
        if all(det[k][5] != det[i][5] or _iou(det[k], det[i]) <= thr for k in kept):
            kept.append(i)
    if mode == "nms":
        return [det[k] for k in kept]
    clusters = {k: [k] for k in kept}
    for i in order:
        if i in clusters:
            continue
        lead = next(k for k in kept if det[k][5] == det[i][5] and det[k][4] >= det[i][4]
                    and _iou(det[k], det[i]) > thr)
        clusters[lead].append(i)
    out = []
    for k in kept:
        w = sum(det[j][4] for j in clusters[k])
        box = [sum(det[j][c] * det[j][4] for j in clusters[k]) / w for c in range(4)]
        out.append([*box, det[k][4], det[k][5]])
    return out


def test_wbf_cross_class_overlap_clusters_of_three_and_cut_boxes():
    det = torch.tensor([
        [100.0, 100, 120, 120, 0.95, 1],  # A: class 1, best of all
        [101.0, 101, 121, 121, 0.90, 0],  # B: class 0, on top of A
        [100.0, 100, 121, 120, 0.80, 0],  # C: class 0, overlaps A more than B: must still join B
        [10.0, 10, 30, 30, 0.90, 2],  # a cluster of four: the full box ...
        [10.0, 10, 24, 30, 0.70, 2],  # ... cut by a window border at x = 24
        [11.0, 10, 30, 31, 0.60, 2],
        [10.0, 12, 30, 30, 0.50, 2],
        [200.0, 5, 208, 13, 0.40, 1],  # alone
    ])
    thr = 0.45
    assert _iou(det[2].tolist(), det[0].tolist()) > _iou(det[2].tolist(), det[1].tolist()) > thr
    wbf = merge_detections(det, thr, "wbf")
    want = torch.tensor(_merge_by_hand(det.tolist(), thr, "wbf"))
    assert wbf.shape == (4, 6)
    assert torch.allclose(wbf, want, atol=1e-5)
    assert torch.equal(wbf[0], det[0])  # A absorbs nothing of another class
    b = wbf[1, :4]
    assert torch.allclose(b, (det[1, :4] * 0.9 + det[2, :4] * 0.8) / 1.7)
    assert torch.allclose(wbf[2, :4], (det[3:7, :4] * det[3:7, 4:5]).sum(0) / det[3:7, 4].sum())
    assert torch.equal(merge_detections(det, thr, "nms"), det[[0, 1, 3, 7]])
    # agnostic: the classes no longer keep B and C apart from A
    agn = merge_detections(det, thr, "wbf", agnostic=True)
    assert len(agn) == 3 and torch.allclose(agn[0, :4], (det[:3, :4] * det[:3, 4:5]).sum(0) / det[:3, 4].sum())


@pytest.mark.parametrize("seed", range(8))
def test_merge_matches_a_hand_written_reference_on_random_clusters(seed):
    """Random clusters of 1-5 jittered and border-cut boxes in 3 classes, overlapping across classes."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(6):
        x, y, s = rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(8, 30)
        for _ in range(int(rng.integers(1, 6))):
            j = rng.uniform(-0.15, 0.15, 4) * s
            box = [x + j[0], y + j[1], x + s + j[2], y + s + j[3]]
            if rng.random() < 0.3:  # cut by a window border through the box
                box[2] = box[0] + (box[2] - box[0]) * rng.uniform(0.5, 0.9)
            rows.append([*box, rng.uniform(0.1, 1.0), float(rng.integers(0, 3))])
    det = torch.tensor(rows, dtype=torch.float64)
    for mode in ("nms", "wbf"):
        got = merge_detections(det, 0.45, mode)
        want = torch.tensor(_merge_by_hand(det.tolist(), 0.45, mode), dtype=torch.float64)
        assert got.shape == want.shape, mode
        assert torch.allclose(got, want, atol=1e-9), mode


class OneBoxModel(torch.nn.Module):
    """Eval-mode output with one box at a fixed place in input pixels; records its inputs."""

    def __init__(self, box=(20.0, 12.0, 8.0, 6.0), nc: int = 2):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.box, self.nc, self.inputs = box, nc, []

    def forward(self, x):
        self.inputs.append(x.clone())
        row = torch.tensor([*self.box, 0.9, 0.9] + [0.01] * (self.nc - 1))
        return row.expand(x.shape[0], 1, -1).contiguous()


def test_model_tile_predictor_scales_pads_and_maps_back():
    m = OneBoxModel()
    tile = np.zeros((40, 50, 3), np.uint8)
    tile[..., 2] = 200  # red in BGR: the model must see it in channel 0 (RGB)
    pred = model_tile_predictor(m, size=50, imgsz=100, conf_thres=0.1)  # windows zoomed 2x for the network
    d = pred([tile, tile])
    x = m.inputs[-1]
    assert x.shape == (2, 3, 96, 128)  # 80 x 100 after the zoom, padded to the stride
    assert x[0, 0, 0, 0] == pytest.approx(200 / 255) and x[0, 2, 0, 0] == 0
    cx, cy, bw, bh = m.box
    expect = torch.tensor([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]) / 2  # 2x zoom undone
    assert len(d) == 2 and torch.allclose(d[0][0, :4], expect)
    # through sliced_predict on a whole image: the same box once per window, shifted by the offsets
    img = np.zeros((60, 130, 3), np.uint8)
    out = sliced_predict(m, img, slice=50, overlap=0.2, conf_thres=0.1, imgsz=50).numpy()
    wins = slice_windows(60, 130, 50, 0.2)
    want = sorted((x1 + cx - bw / 2, y1 + cy - bh / 2) for x1, y1, *_ in wins)
    got = sorted(map(tuple, out[:, :2].tolist()))
    assert np.allclose(got, want, atol=1e-4), (got, want)  # plain arrays: pytest.approx refuses nested data


def test_sliced_predict_with_a_real_tiny_model():
    from models.yolo import Model
    torch.manual_seed(0)
    m = Model("yolov5n.yaml", nc=2).eval()
    img = np.random.default_rng(0).integers(0, 255, (150, 230, 3), dtype=np.uint8)
    for full in (False, True):
        d = sliced_predict(m, img, slice=96, overlap=0.2, conf_thres=0.001, imgsz=96, full=full, batch=2)
        assert d.ndim == 2 and d.shape[1] == 6 and d.dtype == torch.float32
        assert (d[:, 0] >= 0).all() and (d[:, 2] <= 230).all() and (d[:, 1] >= 0).all() and (d[:, 3] <= 150).all()
        assert set(d[:, 5].tolist()) <= {0.0, 1.0}


class BlobModel(torch.nn.Module):
    """A 'detector' that really looks at its input: red blobs are class 0, green blobs class 1 (the
    conftest's squares and discs). Blobs touching the input border score lower (likely cut)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.stride, self.nc, self.names = torch.tensor([8.0, 16.0, 32.0]), 2, ["square", "disc"]

    def forward(self, x):
        out = torch.zeros(x.shape[0], 64, 7)
        for b, im in enumerate(x):
            rows = []
            for k, mask in enumerate(((im[0] > 0.7) & (im[1] < 0.3), (im[1] > 0.7) & (im[0] < 0.3))):
                n, _, stats, _ = cv2.connectedComponentsWithStats(mask.numpy().astype(np.uint8))
                for x0, y0, bw, bh, _ in stats[1:n].tolist():
                    edge = x0 == 0 or y0 == 0 or x0 + bw == im.shape[2] or y0 + bh == im.shape[1]
                    rows.append([x0 + bw / 2, y0 + bh / 2, bw, bh, 0.3 if edge else 0.9, float(k == 0), float(k == 1)])
            if rows:
                out[b, :len(rows)] = torch.tensor(rows[:64])
        return out


def _grid_coco(root: Path, n: int = 3, h: int = 128, w: int = 160) -> Path:
    """Red and green squares, one per 32 px cell and never touching, so BlobModel finds every box
    exactly; returns a data YAML."""
    import json

    import yaml
    rng = np.random.default_rng(1)
    cats = [{"id": 3, "name": "square"}, {"id": 7, "name": "disc"}]
    images, anns = [], []
    for i in range(n):
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        for cy in range(0, h, 32):
            for cx in range(0, w, 32):
                if rng.random() < 0.4:
                    continue
                s = int(rng.integers(6, 21))
                x, y = cx + 3 + int(rng.integers(0, 32 - 6 - s + 1)), cy + 3 + int(rng.integers(0, 32 - 6 - s + 1))
                k = int(rng.integers(0, 2))
                cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), ((0, 0, 255), (0, 255, 0))[k], -1)
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cats[k]["id"],
                             "bbox": [x, y, s, s], "area": s * s, "iscrowd": 0})
        cv2.imwrite(str(root / f"{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h})
    (root / "val.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    split = {"json": "val.json", "images": "."}
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": split, "val": split}))
    return root / "data.yaml"


def test_val_slice_reads_originals_and_scores_like_unsliced(tmp_path):
    """val.py --slice: images re-read from disk, boxes back in original pixels, the COCO path. One
    window over the whole image gives the unsliced boxes exactly; 64 px windows find every square
    whole in some window (64 px, overlap 0.6), and their cut-off pieces (scored lower) cannot lower AP."""
    import json

    import val
    data = _grid_coco(tmp_path)
    kw = dict(data=str(data), model=BlobModel(), imgsz=160, batch_size=2, workers=0, project=str(tmp_path / "runs"),
              plots=False, verbose=False, conf_thres=0.1)
    base = val.run(**kw, name="base")
    assert base["AP"] == 1.0  # the stand-in detector is exact on these squares
    for full in (False, True):  # the full-image pass sees the same pixels here: its copies must merge away
        one = val.run(**kw, slice=160, slice_full=full, name="one")
        assert json.loads((Path(one["save_dir"]) / "predictions.json").read_text()) == \
            json.loads((Path(base["save_dir"]) / "predictions.json").read_text())
    tiled = val.run(**{**kw, "imgsz": 64}, slice=64, overlap=0.6, name="tiled")
    assert tiled["AP"] == 1.0
    preds = json.loads((Path(tiled["save_dir"]) / "predictions.json").read_text())
    assert len([p for p in preds if p["score"] == 0.9]) == tiled["instances"]  # no duplicate whole boxes
    assert len(preds) > tiled["instances"]  # cut-off pieces were there (scored 0.3): the windows did overlap objects
    meta = json.loads((Path(tiled["save_dir"]) / "metrics.json").read_text())
    assert meta["slice"] == 64 and meta["overlap"] == 0.6 and meta["slice_full"] is False


def test_val_slice_unreadable_original_is_a_clear_error(tmp_path):
    from utils.eval.inputs import read_orig  # val.py's engine (utils/eval/validator.py) reads originals with it

    class DS:
        img_dir = str(tmp_path)

    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"a.png: image id 5 could not be read"):
        read_orig(DS(), "a.png", {"image_id": 5, "orig_shape": (4, 4)})
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((4, 6, 3), np.uint8))
    assert read_orig(DS(), "b.png", {"image_id": 6, "orig_shape": (4, 6)}).shape == (4, 6, 3)
    with pytest.raises(ValueError, match="decoded as 6x4"):
        read_orig(DS(), "b.png", {"image_id": 6, "orig_shape": (6, 4)})


def test_val_slice_merge_greedy_nmm_folds_cut_pieces_into_whole_boxes(tmp_path):
    """val.py --slice-merge greedy-nmm: a piece of a square cut by a window border lies inside the whole
    square another window sees (IoS 1), so SAHI's merge folds it in where NMS by IoU leaves it."""
    import json

    import val
    data = _grid_coco(tmp_path)
    kw = dict(data=str(data), model=BlobModel(), imgsz=64, batch_size=2, workers=0, project=str(tmp_path / "runs"),
              plots=False, verbose=False, conf_thres=0.1, slice=64, overlap=0.6)
    nms = val.run(**kw, name="nms")
    greedy = val.run(**kw, slice_merge="greedy-nmm", name="greedy")
    n_nms, n_greedy = (len(json.loads((Path(r["save_dir"]) / "predictions.json").read_text())) for r in (nms, greedy))
    assert n_nms > nms["instances"] and n_greedy == greedy["instances"] and greedy["AP"] == 1.0
    assert json.loads((Path(greedy["save_dir"]) / "metrics.json").read_text())["slice_merge"] == "greedy-nmm"
