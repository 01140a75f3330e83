"""Autoanchor: BPR by hand, planted-shape recovery, and anchors written into the model."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from models.head import Detect
from utils.engine.autoanchor import best_possible_recall, check_anchors, dataset_box_wh, kmean_anchors

PLANTED = np.array([[4, 5], [9, 6], [6, 12], [16, 14], [24, 40], [40, 24], [64, 70], [120, 90],
                    [200, 180]], dtype=float)


def planted_boxes(seed=1, per=200, noise=0.05):
    rng = np.random.default_rng(seed)
    return np.concatenate([p * np.exp(rng.normal(0, noise, (per, 2))) for p in PLANTED])


class Holder(nn.Module):
    def __init__(self, anchors, strides=(8.0, 16.0, 32.0)):
        super().__init__()
        self.detect = Detect(2, anchors, [8] * len(anchors))
        self.detect.stride = torch.tensor(strides)


def test_dataset_box_wh_scales_long_side():
    shapes = np.array([[100, 200], [400, 100]])  # (h, w)
    boxes = [np.array([[0, 10, 10, 30, 20]]),
             np.array([[1, 0, 0, 50, 100], [0, 5, 5, 5, 9]])]  # second box has zero width
    wh = dataset_box_wh(shapes, boxes, 640)
    np.testing.assert_allclose(wh, [[20 * 3.2, 10 * 3.2], [50 * 1.6, 100 * 1.6]], rtol=1e-6)
    with pytest.raises(ValueError, match="2 image shapes but 1"):
        dataset_box_wh(shapes, boxes[:1], 640)


def test_best_possible_recall_hand_case():
    wh = np.array([[10, 10], [150, 10], [30, 30], [12, 45]])
    # boxes 1 and 3 fit both anchors (side ratios 1 and 3 < 4); box 2 is 5x too wide for
    # the big anchor and 15x for the small; box 4: 45/10 = 4.5 fails, 30/12 = 2.5 fits
    bpr, aat = best_possible_recall(wh, np.array([[10, 10], [30, 30]]), thr=4.0)
    assert bpr == pytest.approx(3 / 4)
    assert aat == pytest.approx((2 + 0 + 2 + 1) / 4)


def test_kmeans_recovers_planted_shapes():
    k = kmean_anchors(planted_boxes(), 9, thr=4.0, gen=300, seed=0, verbose=False)
    assert k.shape == (9, 2)
    assert (np.diff(k.prod(1)) >= 0).all()  # sorted by area
    # every planted shape has a recovered anchor within 10% on both sides
    worst = np.abs(np.log(k[:, None, :] / PLANTED[None])).max(2).min(0)
    assert (np.exp(worst) < 1.10).all(), np.round(k, 1)
    again = kmean_anchors(planted_boxes(), 9, thr=4.0, gen=300, seed=0, verbose=False)
    np.testing.assert_array_equal(k, again)  # seeded: reproducible


def test_anchors_never_below_min_size():
    rng = np.random.default_rng(0)
    wh = rng.uniform(0.5, 1.5, (500, 2))
    k = kmean_anchors(wh, 3, gen=50, verbose=False, min_size=2.0)
    assert (k >= 2.0).all()


def test_check_anchors_refits_and_writes_model(capsys):
    bad = [[300, 300, 320, 280, 280, 340]] * 3  # every anchor far too big
    model = Holder(bad)
    model.detect.stride = torch.tensor([32.0, 8.0, 16.0])  # levels need not be in stride order
    wh = planted_boxes()
    assert best_possible_recall(wh, model.detect.anchors.numpy().reshape(-1, 2))[0] < 0.5
    assert check_anchors(wh, model, thr=4.0, imgsz=640, gen=200) is True
    assert "BPR" in capsys.readouterr().out
    a = model.detect.anchors
    assert best_possible_recall(wh, a.numpy().reshape(-1, 2))[0] > 0.98
    area = a.prod(-1)
    # smallest anchors on the stride-8 level (index 1), largest on stride 32 (index 0)
    assert area[1].max() <= area[2].min() and area[2].max() <= area[0].min()
    assert (a >= 2.0).all()
    # saved with the model: the state dict carries the new anchors
    fresh = Holder(bad)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.detect.anchors, a)


def test_check_anchors_leaves_good_anchors():
    model = Holder(PLANTED.reshape(3, 6).tolist())
    before = model.detect.anchors.clone()
    assert check_anchors(planted_boxes(), model, thr=4.0, imgsz=640, verbose=False) is False
    assert torch.equal(model.detect.anchors, before)
