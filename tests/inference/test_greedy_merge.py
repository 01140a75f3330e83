"""The greedy IoS / IoU merges (utils/inference/greedy_merge.py) against a slow hand-written reference and,
where the sahi package is installed, against SAHI's own postprocess classes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.inference.greedy_merge import greedy_clusters, greedy_merge, overlap_pairs
from utils.inference.slicing import merge_detections


def _metric(a, b, metric):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    aa, ab = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return inter / (aa + ab - inter if metric == "iou" else min(aa, ab))


def _by_hand(det: list[list[float]], thr: float, metric: str, mode: str, agnostic: bool = False):
    """The greedy pass one box at a time: best first, an unclaimed box leads and claims every later
    unclaimed box of its class with metric >= thr; greedy-nmm then grows the leader into the union of
    its members, best first, each joining while it matches the grown box by more than thr."""
    order = sorted(range(len(det)), key=lambda i: -det[i][4])
    claimed, out = set(), []
    for pos, i in enumerate(order):
        if i in claimed:
            continue
        box = list(det[i])
        for j in order[pos + 1:]:
            if j in claimed or (not agnostic and det[j][5] != det[i][5]):
                continue
            if _metric(det[i], det[j], metric) >= thr:
                claimed.add(j)
                if mode == "greedy-nmm" and _metric(box, det[j], metric) > thr:
                    box[:2] = [min(box[0], det[j][0]), min(box[1], det[j][1])]
                    box[2:4] = [max(box[2], det[j][2]), max(box[3], det[j][3])]
        out.append(box)
    return out


def _random_clusters(seed: int, n_clusters: int = 8) -> torch.Tensor:
    """Clusters of 1-6 jittered boxes, some cut by a window border (halves of a box: IoS high, IoU low),
    some cluster members much larger than their leader (the grown union can lose them), 3 classes."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_clusters):
        x, y, s = rng.uniform(0, 120), rng.uniform(0, 120), rng.uniform(6, 30)
        for _ in range(int(rng.integers(1, 7))):
            j = rng.uniform(-0.25, 0.25, 4) * s
            box = [x + j[0], y + j[1], x + s + j[2], y + s + j[3]]
            r = rng.random()
            if r < 0.3:  # cut by a window border
                box[2] = box[0] + (box[2] - box[0]) * rng.uniform(0.3, 0.9)
            elif r < 0.45:  # a much larger box around it (a full-image pass's coarse box)
                box = [box[0] - s * 0.6, box[1] - s * 0.3, box[2] + s * 0.8, box[3] + s * 0.5]
            rows.append([*box, rng.uniform(0.05, 1.0), float(rng.integers(0, 3))])
    return torch.tensor(rows, dtype=torch.float64)


def _sorted(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 6)
    return a[np.lexsort(a.T[::-1])]


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("mode,metric", [("greedy-nmm", "ios"), ("greedy-nmm", "iou"), ("nms", "ios")])
def test_greedy_merge_matches_a_box_by_box_reference(seed, mode, metric):
    det = _random_clusters(seed)
    for agnostic in (False, True):
        got = greedy_merge(det, 0.5, metric, mode, agnostic)
        want = _by_hand(det.tolist(), 0.5, metric, mode, agnostic)
        np.testing.assert_allclose(_sorted(got), _sorted(want), atol=1e-9, err_msg=f"{mode} {metric} {agnostic}")
        assert (got[1:, 4] <= got[:-1, 4]).all()  # best score first


def test_greedy_nms_by_iou_equals_torchvision_nms():
    det = _random_clusters(3, 20)
    np.testing.assert_allclose(_sorted(greedy_merge(det, 0.45, "iou", "nms")),
                               _sorted(merge_detections(det, 0.45, "nms")), atol=0)


def test_border_halves_merge_by_ios_but_not_by_iou():
    # a car of 20 x 10 px cut by a window border at x = 110: the left window sees its left 60%, the right
    # window the whole car (it lies inside that window), so IoU 0.6 < 0.65 but IoS 1
    det = torch.tensor([[100.0, 50, 120, 60, 0.9, 0], [100.0, 50, 112, 60, 0.8, 0], [300.0, 50, 320, 60, 0.7, 0]])
    ios = merge_detections(det, 0.65, "greedy-nmm")
    assert torch.equal(ios, det[[0, 2]])
    assert len(merge_detections(det, 0.65, "greedy-nmm", metric="iou")) == 3
    # the cut half scoring higher: greedy-nmm grows it back into the whole car; NMS by IoS keeps the half
    det[1, 4] = 0.95
    assert torch.equal(merge_detections(det, 0.65, "greedy-nmm")[0], torch.tensor([100.0, 50, 120, 60, 0.95, 0]))
    assert torch.equal(merge_detections(det, 0.65, "nms", metric="ios")[0], det[1])
    with pytest.raises(ValueError, match="metric"):
        merge_detections(det, 0.5, "wbf", metric="ios")
    assert merge_detections(torch.zeros(0, 6), 0.5, "greedy-nmm").shape == (0, 6)


def test_chains_resolve_in_greedy_order():
    # A claims B, B would claim C, but B is no leader, so C leads: a chain the fixed point must get right
    det = torch.tensor([[0.0, 0, 10, 10, 0.9, 0], [5.0, 0, 15, 10, 0.8, 0], [10.0, 0, 20, 10, 0.7, 0],
                        [15.0, 0, 25, 10, 0.6, 0]])
    i, j, m = overlap_pairs(det[:, :4], det[:, 5], 0.3, "iou")  # neighbours overlap by IoU 1/3, A and C not
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 2), (2, 3)] and torch.allclose(m, torch.tensor(1 / 3))
    order, leader = greedy_clusters(det, 0.3, "iou")
    assert order.tolist() == [0, 1, 2, 3] and leader.tolist() == [0, 0, 2, 2]
    assert torch.equal(merge_detections(det, 0.3, "greedy-nmm", metric="iou")[:, :4],
                       torch.tensor([[0.0, 0, 15, 10], [10.0, 0, 25, 10]]))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["GREEDYNMM", "NMS"])
def test_equals_sahis_own_postprocess(seed, kind):
    """SAHI's GreedyNMMPostprocess / NMSPostprocess with IoS on the same boxes (the independent reference)."""
    pytest.importorskip("sahi")
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction
    det = _random_clusters(seed + 100, 12).float()
    det[:, :4] = det[:, :4].clamp_min(0) + 1  # SAHI's boxes are non-negative
    preds = [ObjectPrediction(bbox=r[:4].tolist(), category_id=int(r[5]), score=float(r[4])) for r in det]
    post = (GreedyNMMPostprocess if kind == "GREEDYNMM" else NMSPostprocess)(
        match_threshold=0.5, match_metric="IOS", class_agnostic=False)
    ref = [[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in post(preds)]
    got = merge_detections(det, 0.5, "greedy-nmm" if kind == "GREEDYNMM" else "nms", metric="ios")
    np.testing.assert_allclose(_sorted(got), _sorted(ref), atol=1e-4)


def test_pairs_in_small_blocks_equal_one_block(monkeypatch):
    """The x-sweep's candidate pairs, processed a few at a time, give the same pairs as in one block; and
    every pair of boxes meeting by the metric is found (a dense check over all n^2 pairs)."""
    import utils.inference.greedy_merge as gm
    det = _random_clusters(7, 30)
    one = overlap_pairs(det[:, :4], det[:, 5], 0.3, "ios")
    monkeypatch.setattr(gm, "_BLOCK", 5)
    small = overlap_pairs(det[:, :4], det[:, 5], 0.3, "ios")
    assert all(torch.equal(a, b) for a, b in zip(one, small))
    rows = det.tolist()
    dense = [(i, j) for i in range(len(rows)) for j in range(i + 1, len(rows))
             if rows[i][5] == rows[j][5] and _metric(rows[i], rows[j], "ios") >= 0.3]
    assert list(zip(one[0].tolist(), one[1].tolist())) == dense and len(dense) > 20
