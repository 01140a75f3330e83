"""ATSS on the anchor-free head (square cell anchors, soft IoU targets) against a slow loop-per-box,
loop-per-cell re-implementation written here, plus hand-worked cases and bad values."""
import math

import pytest
import torch

from tests.assign.test_assigners import _resolve, dense_to_dict
from utils.assign import ATSSAssigner, build_assigner, make_grid
from utils.config import default_hyp, parse_hyp_set

HYP = default_hyp()
EPS = 1e-7  # utils.boxes.aligned_iou's, so that the reference's IoUs are the same floats


def iou_py(a: list[float], b: list[float]) -> float:
    """IoU of two xyxy boxes in Python floats, the operations in aligned_iou's order."""
    w1, h1, w2, h2 = a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    return inter / (w1 * h1 + w2 * h2 - inter + EPS)


def ref_atss_free(strides, shapes, boxes, mask, topk=9, cell_size=5.0, force=True):
    """Anchor-free ATSS, one box at a time: per level sort *every* cell by centre distance (a stable sort,
    so equidistant cells keep the flat order), take the first topk; each cell is a square of side
    cell_size * stride; threshold mean + std; positive if IoU >= threshold and the cell centre is
    strictly inside the box. Returns ({(b, a): g}, contested positions, boxes with a tie at the k-th place)."""
    cells = []  # (flat index, level, cx, cy, stride)
    for lvl, ((h, w), s) in enumerate(zip(shapes, strides)):
        for y in range(h):
            for x in range(w):
                cells.append((len(cells), lvl, (x + 0.5) * s, (y + 0.5) * s, float(s)))
    cands, kth_ties = {}, 0
    for b in range(boxes.shape[0]):
        for g in range(boxes.shape[1]):
            if not mask[b, g]:
                continue
            box = boxes[b, g].tolist()
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            chosen = []
            for lvl in range(len(strides)):
                level = [c for c in cells if c[1] == lvl]
                dist = [(c[2] - cx) * (c[2] - cx) + (c[3] - cy) * (c[3] - cy) for c in level]
                order = sorted(range(len(level)), key=lambda i: dist[i])  # stable: ties keep flat order
                k = min(topk, len(level))
                kth_ties += k < len(level) and dist[order[k - 1]] == dist[order[k]]
                chosen += [level[i] for i in order[:k]]
            sims = []
            for _, _, px, py, s in chosen:
                half = cell_size * s / 2
                sims.append(iou_py([px - half, py - half, px + half, py + half], box))
            n = len(sims)
            mean = sum(sims) / n
            thr = mean + math.sqrt(sum((v - mean) ** 2 for v in sims) / (n - 1))
            pos = [v >= thr and box[0] < px < box[2] and box[1] < py < box[3]
                   for v, (_, _, px, py, _) in zip(sims, chosen)]
            if force and not any(pos):
                pos[sims.index(max(sims))] = True  # the first best candidate
            for p, v, c in zip(pos, sims, chosen):
                if p:
                    cands.setdefault((b, c[0]), []).append((v, g))
    out, contested = _resolve(cands)
    return out, contested, kth_ties


def free_case(seed: int, img_hw=(96, 128), strides=(8, 16, 32), b=2, g=12, whole=False):
    """Random boxes 2..61 px (log-uniform, many tiny) with centres in the image; ``whole``: whole-pixel
    boxes, a third of them centred on stride-8 cell corners (equidistant cells), and exact copies."""
    gen = torch.Generator().manual_seed(seed)
    h, w = img_hw
    shapes = [(math.ceil(h / s), math.ceil(w / s)) for s in strides]
    wh = torch.exp(torch.rand(b, g, 2, generator=gen, dtype=torch.float64) * math.log(60)) + 1
    cxy = torch.rand(b, g, 2, generator=gen, dtype=torch.float64) * torch.tensor([w, h], dtype=torch.float64)
    if whole:
        wh = (wh / 2).round().clamp(min=1) * 2  # even sides: a centre on a corner stays on it
        cxy = cxy.round()
        cxy[:, ::3] = (cxy[:, ::3] / 8).round().clamp(min=1) * 8
    boxes = torch.cat((cxy - wh / 2, cxy + wh / 2), -1)
    if whole:
        boxes[:, -2:] = boxes[:, :2]  # copies tie with boxes 0 and 1 everywhere
    mask = torch.rand(b, g, generator=gen) < 0.85
    mask[:, 0] = True
    boxes = boxes * mask[..., None]
    cls = torch.randint(0, 3, (b, g), generator=gen)
    grid = make_grid(list(strides), shapes, dtype=torch.float64)
    scores = torch.rand(b, grid.num, 3, generator=gen, dtype=torch.float64)
    pwh = torch.rand(b, grid.num, 2, generator=gen, dtype=torch.float64) * 30 + 2
    pxy = grid.xy + torch.randn(b, grid.num, 2, generator=gen, dtype=torch.float64) * 4
    pred = torch.cat((pxy - pwh / 2, pxy + pwh / 2), -1)
    return list(strides), shapes, grid, boxes, mask, cls, scores, pred


CASES = [dict(), dict(strides=(4, 8, 16, 32)), dict(img_hw=(40, 72)),  # P5 2 x 3
         dict(img_hw=(24, 320)),  # thin grids (P5 1 x 10): the top-k reach far along x
         dict(img_hw=(16, 16), strides=(8, 16))]  # fewer than topk cells per level


@pytest.mark.parametrize("force,cell_size", [(True, 5.0), (False, 5.0), (True, 2.5)])
def test_anchor_free_atss_matches_reference(force, cell_size):
    contested = ties = total = 0
    for seed in range(10):
        strides, shapes, grid, boxes, mask, cls, scores, pred = free_case(seed, whole=seed % 2 == 1,
                                                                          **CASES[seed % 5])
        a = ATSSAssigner(9, force, cell_size=cell_size)
        ref, n, t = ref_atss_free(strides, shapes, boxes, mask, 9, cell_size, force)
        hard = a(grid, boxes, mask)
        assert hard.scores is None and dense_to_dict(hard.fg, hard.gt_idx) == ref, seed
        # with predictions: the same positives, and soft targets IoU(predicted box, its box) at its class
        soft = a(grid, boxes, mask, gt_cls=cls, pred_scores=scores, pred_boxes=pred)
        assert torch.equal(soft.fg, hard.fg) and torch.equal(soft.gt_idx, hard.gt_idx)
        want = torch.zeros_like(scores)
        for (bi, ai), gi in ref.items():
            want[bi, ai, cls[bi, gi]] = iou_py(pred[bi, ai].tolist(), boxes[bi, gi].tolist())
        torch.testing.assert_close(soft.scores, want, rtol=0, atol=1e-12)
        contested, ties, total = contested + n, ties + t, total + len(ref)
    assert contested > 0 and ties > 0 and total > 0  # the conflict rule and the k-th-place ties were exercised


def test_anchor_free_atss_hand_cases():
    # 64 px image, P3-P5; a 16 px box centred on P3 cell (1, 1) at (12, 12) lies inside every chosen
    # cell's square (40, 80, 160 px): IoU 256/1600 on the 9 P3 cells, 256/6400 on 9 P4 cells,
    # 256/25600 on all 4 P5 cells; mean + std = 0.1496 < 0.16, so the P3 cells pass, and of those
    # only (1, 1) has its centre strictly inside the box (the others sit on its border or outside)
    grid = make_grid([8, 16, 32], [(8, 8), (4, 4), (2, 2)], dtype=torch.float64)
    box, one = torch.tensor([[[4.0, 4.0, 20.0, 20.0]]], dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool)
    ious = torch.tensor([0.16] * 9 + [0.04] * 9 + [0.01] * 4, dtype=torch.float64)
    assert 0.04 < ious.mean() + ious.std() < 0.16
    assert ATSSAssigner(9)(grid, box, one).fg[0].nonzero().flatten().tolist() == [1 * 8 + 1]
    # P3-P4 only: 9 x 0.16 and 4 x 0.04 put the threshold at 0.181, above every IoU: no positive
    # unless forced, then the nearest best cell, (1, 1)
    grid = make_grid([8, 16], [(4, 4), (2, 2)], dtype=torch.float64)
    ious = torch.tensor([0.16] * 9 + [0.04] * 4, dtype=torch.float64)
    assert ious.mean() + ious.std() > 0.16
    assert not ATSSAssigner(9, force_positive=False)(grid, box, one).fg.any()
    assert ATSSAssigner(9)(grid, box, one).fg[0].nonzero().flatten().tolist() == [1 * 4 + 1]


def test_anchor_free_atss_through_the_registry_and_hyp():
    a = build_assigner("atss", HYP, "anchor-free")
    assert isinstance(a, ATSSAssigner) and a.cell_size == 5.0 and a.topk == HYP["atss_topk"]
    assert build_assigner("atss", {**HYP, "atss_cell_size": 2.5}, "anchor-free").cell_size == 2.5
    # a hyp file or --hyp-set may set the key (it lives in ATSSAssigner.optional_hyp, not default.yaml)
    assert parse_hyp_set(["atss_cell_size=3"], dict(HYP), "default.yaml") == {"atss_cell_size": 3.0}
    with pytest.raises(ValueError, match="atss_cell_size"):
        parse_hyp_set(["atss_cell_size=big"], dict(HYP), "default.yaml")


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan, "5", True])
def test_bad_cell_size_is_an_error(bad):
    with pytest.raises(ValueError, match="atss_cell_size must be a number > 0"):
        build_assigner("atss", {**HYP, "atss_cell_size": bad}, "anchor-free")


def test_soft_targets_need_classes_and_predicted_boxes():
    _, _, grid, boxes, mask, cls, scores, pred = free_case(0)
    a = build_assigner("atss", HYP, "anchor-free")
    for kw in (dict(pred_scores=scores, pred_boxes=pred), dict(gt_cls=cls, pred_scores=scores)):
        with pytest.raises(ValueError, match="need gt_cls and pred_boxes"):
            a(grid, boxes, mask, **kw)
    # no boxes: zero soft targets of the right shape, as DFLLoss needs
    empty = a(grid, boxes[:, :0], mask[:, :0], gt_cls=cls[:, :0], pred_scores=scores, pred_boxes=pred)
    assert empty.scores.shape == scores.shape and not empty.scores.any() and not empty.fg.any()
