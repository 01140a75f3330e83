"""NMS against a slow greedy reference; scale-back of boxes through letterboxing of odd-sized images."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from utils.inference.postprocess import non_max_suppression, scale_boxes, to_coco_results, xywh2xyxy


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def slow_nms(pred: torch.Tensor, conf_thres: float, iou_thres: float, multi_label: bool, agnostic: bool,
             max_det: int, classes: list[int] | None = None) -> list[list[list[float]]]:
    """Obvious per-box loops: candidates, then greedy suppression by descending score."""
    out = []
    for img in pred.double().tolist():
        cands = []
        for cx, cy, w, h, obj, *cls in img:
            if obj <= conf_thres:
                continue
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            scores = [obj * c for c in cls]
            pairs = [(s, j) for j, s in enumerate(scores) if s > conf_thres] if multi_label else \
                [max((s, j) for j, s in enumerate(scores))]
            cands += [box + [s, float(j)] for s, j in pairs if s > conf_thres]
        if classes is not None:
            cands = [c for c in cands if int(c[5]) in classes]
        cands.sort(key=lambda c: -c[4])
        kept: list[list[float]] = []
        for c in cands:
            if all(_iou(c, k) <= iou_thres for k in kept if agnostic or k[5] == c[5]):
                kept.append(c)
        out.append(kept[:max_det])
    return out


def _random_pred(b: int = 2, n: int = 150, nc: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(b, 12, 2, generator=g) * 200  # clusters so NMS has work to do
    idx = torch.randint(0, 12, (b, n), generator=g)
    xy = torch.gather(centers, 1, idx[..., None].expand(-1, -1, 2)) + torch.randn(b, n, 2, generator=g) * 4
    wh = 10 + torch.rand(b, n, 2, generator=g) * 30
    obj = torch.rand(b, n, 1, generator=g)
    cls = torch.rand(b, n, nc, generator=g)
    return torch.cat((xy, wh, obj, cls), -1)


@pytest.mark.parametrize("multi_label,agnostic", [(False, False), (True, False), (False, True)])
def test_nms_matches_slow_reference(multi_label, agnostic):
    pred = _random_pred(seed=int(multi_label) + 2 * int(agnostic))
    got = non_max_suppression(pred, 0.05, 0.5, multi_label=multi_label, agnostic=agnostic, max_det=300)
    ref = slow_nms(pred, 0.05, 0.5, multi_label, agnostic, 300)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == (len(r), 6) and len(r) > 5
        # same set of (box, score, class); both sorted by score
        np.testing.assert_allclose(g.double().numpy(), np.array(r), rtol=0, atol=1e-4)


def test_nms_max_det_classes_and_empty():
    pred = _random_pred(b=1, seed=5)
    got = non_max_suppression(pred, 0.01, 0.7, max_det=7, classes=[1])[0]
    ref = slow_nms(pred, 0.01, 0.7, False, False, 7, classes=[1])[0]
    assert len(got) == 7 and (got[:, 5] == 1).all()
    np.testing.assert_allclose(got.double().numpy(), np.array(ref), atol=1e-4)
    empty = torch.zeros(3, 10, 8)  # objectness 0 everywhere
    assert [d.shape for d in non_max_suppression(empty, 0.001, 0.6)] == [(0, 6)] * 3
    with pytest.raises(ValueError, match="expected"):
        non_max_suppression(torch.zeros(10, 8), 0.1, 0.5)


def _letterbox(img: np.ndarray, size: int, stride: int = 32, rect: bool = False):
    """Test-local letterbox: scale to fit, pad to size (or to a stride multiple when rect)."""
    h0, w0 = img.shape[:2]
    r = min(size / h0, size / w0)
    w, h = round(w0 * r), round(h0 * r)
    out_w, out_h = (int(np.ceil(w / stride) * stride), int(np.ceil(h / stride) * stride)) if rect else (size, size)
    pw, ph = (out_w - w) / 2, (out_h - h) / 2
    resized = cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)
    top, left = int(round(ph - 0.1)), int(round(pw - 0.1))
    out = cv2.copyMakeBorder(resized, top, out_h - h - top, left, out_w - w - left, cv2.BORDER_CONSTANT, value=0)
    return out, {"orig_shape": (h0, w0), "ratio": (w / w0, h / h0), "pad": (left, top)}


@pytest.mark.parametrize("shape,size,rect", [((37, 101), 64, False), ((101, 37), 64, True), ((333, 251), 160, True),
                                             ((17, 17), 128, False)])
def test_scale_boxes_through_letterbox(shape, size, rect):
    """Draw a rectangle in an odd-sized image, letterbox it, find it in the letterboxed pixels and map
    it back: it must land on the drawn rectangle within one letterboxed pixel."""
    h0, w0 = shape
    img = np.zeros((h0, w0), np.uint8)
    x1, y1, x2, y2 = w0 // 5, h0 // 4, w0 * 3 // 5 + 1, h0 * 3 // 4  # pixel-edge coords
    img[y1:y2, x1:x2] = 255
    lb, meta = _letterbox(img, size, rect=rect)
    ys, xs = np.nonzero(lb)
    found = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 0.9, 1.0]], dtype=torch.float64)
    back = scale_boxes(found, meta)
    tol = 1.0 / min(meta["ratio"]) + 1e-6  # one letterboxed pixel in original pixels
    np.testing.assert_allclose(back[0, :4].numpy(), [x1, y1, x2, y2], atol=tol)
    assert back[0, 4:].tolist() == [0.9, 1.0]  # conf, cls untouched


def test_scale_boxes_clips_and_handles_numpy():
    meta = {"orig_shape": (50, 80), "ratio": (0.5, 0.5), "pad": (10, 3)}
    boxes = np.array([[0.0, 0.0, 100.0, 100.0], [20.0, 8.0, 30.0, 13.0]])
    out = scale_boxes(boxes, meta)
    np.testing.assert_allclose(out, [[0, 0, 80, 50], [20, 10, 40, 20]])
    assert boxes[0, 2] == 100.0  # input untouched
    with pytest.raises(ValueError, match="pad"):
        scale_boxes(boxes, {"orig_shape": (5, 5), "ratio": (1, 1)})


def test_to_coco_results_and_xywh2xyxy():
    det = torch.tensor([[10.0, 20.0, 15.5, 30.25, 0.912345678, 1.0]])
    res = to_coco_results(det, 42, [3, 7])
    assert res == [{"image_id": 42, "category_id": 7, "bbox": [10.0, 20.0, 5.5, 10.25], "score": 0.91235}]
    with pytest.raises(ValueError, match="class index 2"):
        to_coco_results(torch.tensor([[0, 0, 1, 1, 0.5, 2.0]]), 1, [3, 7])
    assert xywh2xyxy(torch.tensor([[10.0, 20.0, 4.0, 6.0]])).tolist() == [[8.0, 17.0, 12.0, 23.0]]
