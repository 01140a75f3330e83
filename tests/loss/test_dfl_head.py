"""The anchor-free DetectDFL head, its task-aligned assigner and DFLLoss, each against a slow,
obvious re-implementation written here; plus close_mosaic and a short train.py run."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models.config import ModelConfigError
from models.yolo import Model
import utils.assign.tal as tal_module
from utils.assign import TaskAlignedAssigner, build_assigner, make_grid
from utils.boxes import aligned_iou
from utils.config import default_hyp
from utils.inference.postprocess import non_max_suppression
from utils.loss import DFLLoss, build_loss
from utils.loss.dfl import dfl_loss

FULL = default_hyp()  # the losses read every value from the hyp they are given


def _slow_tal(scores, pboxes, points, strides, gt_boxes, gt_cls, gt_mask, topk, alpha, beta, stal=False):
    """Loop-per-box task-aligned assignment with the candidate rule of utils/assign/tal.py; ``stal``: the
    inside test sees each side shorter than the finest stride widened to twice it about the centre."""
    finest = float(strides.min())
    b_n, a_n, nc = scores.shape
    fg = torch.zeros(b_n, a_n, dtype=torch.bool)
    idx = torch.zeros(b_n, a_n, dtype=torch.long)
    tscore = torch.zeros(b_n, a_n, nc, dtype=scores.dtype)
    for b in range(b_n):
        claims = {}  # anchor -> list of (box, iou, metric)
        for g in range(gt_boxes.shape[1]):
            if not gt_mask[b, g]:
                continue
            x1, y1, x2, y2 = gt_boxes[b, g].tolist()
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            ix1, ix2 = (cx - finest, cx + finest) if stal and x2 - x1 < finest else (x1, x2)
            iy1, iy2 = (cy - finest, cy + finest) if stal and y2 - y1 < finest else (y1, y2)
            cands = []
            for a in range(a_n):
                px, py = points[a].tolist()
                s = float(strides[a])
                inside = min(px - ix1, py - iy1, ix2 - px, iy2 - py) > 1e-9
                holds = abs(cx - px) <= s / 2 and abs(cy - py) <= s / 2
                if inside or holds:
                    iou = max(float(aligned_iou(pboxes[b, a], gt_boxes[b, g], "ciou")), 0.0)
                    m = float(scores[b, a, gt_cls[b, g]]) ** alpha * iou ** beta
                    cands.append((m, -a, a, iou))
            chosen = sorted(cands, reverse=True)[:topk]  # ties: lowest anchor index first
            for m, _, a, iou in chosen:
                claims.setdefault(a, []).append((g, iou, m))
        won = {a: max(lst, key=lambda t: (t[1], -t[0])) for a, lst in claims.items()}  # most overlap; ties: lowest box
        for a, (g, iou, m) in won.items():
            # a box's normalisation runs over the cells it kept after conflicts (as Ultralytics does)
            kept = [(m2, iou2) for g2, iou2, m2 in won.values() if g2 == g]
            best_m, best_iou = max(c[0] for c in kept), max(c[1] for c in kept)
            fg[b, a], idx[b, a] = True, g
            tscore[b, a, gt_cls[b, g]] = m * best_iou / (best_m + 1e-9)
    return fg, idx, tscore


def test_task_aligned_assigner_matches_slow_reference():
    torch.manual_seed(0)
    points = torch.cat([(torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="xy"), -1)
                         .reshape(-1, 2).double() + 0.5) * s for n, s in ((8, 8), (4, 16), (2, 32))])
    strides = torch.cat([torch.full((n * n,), float(s)) for n, s in ((8, 8), (4, 16), (2, 32))]).double()
    b, a, nc, g = 2, points.shape[0], 3, 5
    xy = torch.rand(b, g, 2, dtype=torch.float64) * 56 + 4
    wh = torch.rand(b, g, 2, dtype=torch.float64) * 30 + 3  # includes boxes no cell centre lies in
    gt_boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
    gt_cls = torch.randint(0, nc, (b, g))
    gt_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    scores = torch.rand(b, a, nc, dtype=torch.float64)
    pxy = points + torch.randn(b, a, 2, dtype=torch.float64) * 4
    pwh = torch.rand(b, a, 2, dtype=torch.float64) * 30 + 2
    pboxes = torch.cat((pxy - pwh / 2, pxy + pwh / 2), -1)
    grid = make_grid([8, 16, 32], [(8, 8), (4, 4), (2, 2)], dtype=torch.float64)
    assert torch.equal(grid.xy, points) and torch.equal(grid.stride, strides)
    t = TaskAlignedAssigner(topk=4, alpha=0.5, beta=6.0)(grid, gt_boxes, gt_mask, gt_cls=gt_cls,
                                                         pred_scores=scores, pred_boxes=pboxes)
    fg, idx, tscore = _slow_tal(scores, pboxes, points, strides, gt_boxes, gt_cls, gt_mask, 4, 0.5, 6.0)
    assert fg.sum() > 10
    assert torch.equal(t.fg, fg)
    assert torch.equal(t.gt_idx[fg], idx[fg])
    torch.testing.assert_close(t.scores, tscore)
    torch.testing.assert_close(t.boxes[fg], gt_boxes[torch.nonzero(fg)[:, 0], idx[fg]])
    # every real box got at least one positive, padded ones none
    for bi in range(b):
        assert set(t.gt_idx[bi][t.fg[bi]].tolist()) == set(torch.nonzero(gt_mask[bi]).flatten().tolist())


def test_tiny_box_between_cell_centres_still_gets_a_cell():
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0]])
    strides = torch.full((4,), 8.0)
    gt = torch.tensor([[[7.5, 7.5, 10.5, 10.5]]])  # 3 px box, no cell centre inside it
    pb = torch.tensor([[[7.0, 7.0, 11.0, 11.0]] * 4])
    grid = make_grid([8], [(2, 2)])
    assert torch.equal(grid.xy, points) and torch.equal(grid.stride, strides)
    t = TaskAlignedAssigner(topk=10)(grid, gt, torch.ones(1, 1, dtype=torch.bool),
                                     gt_cls=torch.zeros(1, 1, dtype=torch.long),
                                     pred_scores=torch.full((1, 4, 1), 0.5), pred_boxes=pb)
    assert t.fg.tolist() == [[False, False, False, True]]  # its centre (9, 9) lies in cell (12, 12)


def _grid_points():
    grid = make_grid([8, 16, 32], [(8, 8), (4, 4), (2, 2)], dtype=torch.float64)
    return grid, grid.xy, grid.stride


def _outside(t, points) -> int:
    """Positives whose cell centre is not strictly inside the box they learn."""
    p, tb = points[t.fg.nonzero()[:, 1]], t.boxes[t.fg]
    return int(((p <= tb[:, :2]) | (p >= tb[:, 2:])).any(-1).sum())


def test_stal_matches_slow_reference_and_keeps_real_boxes_for_targets():
    """STAL (tal_stal): small boxes' candidates against the loop reference; IoUs, targets and boxes
    come from the real boxes, and the option changes what the small boxes learn from."""
    torch.manual_seed(1)
    grid, points, strides = _grid_points()
    b, a, nc, g = 2, points.shape[0], 3, 8
    xy = torch.rand(b, g, 2, dtype=torch.float64) * 56 + 4
    wh = torch.exp(torch.rand(b, g, 2, dtype=torch.float64) * math.log(20)) + 1  # 2..21 px: many below 8
    wh[:, -1] = torch.tensor([3.0, 30.0], dtype=torch.float64)  # thin in x only
    gt_boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
    gt_cls = torch.randint(0, nc, (b, g))
    gt_mask = torch.ones(b, g, dtype=torch.bool)
    gt_mask[1, 5] = False
    scores = torch.rand(b, a, nc, dtype=torch.float64)
    pxy = points + torch.randn(b, a, 2, dtype=torch.float64) * 3
    pwh = torch.rand(b, a, 2, dtype=torch.float64) * 12 + 2
    pboxes = torch.cat((pxy - pwh / 2, pxy + pwh / 2), -1)
    # topk above any box's candidate count: a tiny box's CIoUs are often clamped to 0, and which of
    # several equal metrics topk keeps is not defined, so every candidate is kept here
    kw = dict(gt_cls=gt_cls, pred_scores=scores, pred_boxes=pboxes)
    on = TaskAlignedAssigner(40, stal=True)(grid, gt_boxes, gt_mask, **kw)
    off = TaskAlignedAssigner(40)(grid, gt_boxes, gt_mask, **kw)
    fg, idx, tscore = _slow_tal(scores, pboxes, points, strides, gt_boxes, gt_cls, gt_mask, 40, 0.5, 6.0, stal=True)
    assert torch.equal(on.fg, fg) and torch.equal(on.gt_idx[fg], idx[fg])
    torch.testing.assert_close(on.scores, tscore)  # the reference's IoUs use the real boxes
    assert torch.equal(on.boxes[fg], gt_boxes[fg.nonzero()[:, 0], idx[fg]])
    # STAL adds positives outside the (real) box they learn; without it only centre-holding cells are
    assert _outside(on, points) > _outside(off, points) > 0


def test_stal_widens_only_small_sides_for_the_candidate_test():
    grid = make_grid([8, 16], [(4, 4), (2, 2)])
    one = torch.ones(1, 1, dtype=torch.bool)
    off, on = TaskAlignedAssigner(10), TaskAlignedAssigner(10, stal=True)
    # a 3 px box at (9, 9), between cell centres: without STAL only the cells holding its centre,
    # P3 (1, 1) and P4 (0, 0); with STAL its box is [1, 17] for the inside test, which holds the
    # P3 centres 4 and 12 each way: P3 cells (0, 0), (1, 0), (0, 1) join
    tiny = torch.tensor([[[7.5, 7.5, 10.5, 10.5]]])
    assert off.candidates(grid, tiny, one)[0, 0].nonzero().flatten().tolist() == [5, 16]
    assert on.candidates(grid, tiny, one)[0, 0].nonzero().flatten().tolist() == [0, 1, 4, 5, 16]
    # 3 x 20 px at (9, 17): only x is widened, to [1, 17] (P3 columns 4 and 12); y keeps [7, 27]
    # (rows 12 and 20); the cell holding the centre, (12, 20), is among them
    thin = torch.tensor([[[7.5, 7.0, 10.5, 27.0]]])
    cells = on.candidates(grid, thin, one)[0, 0, :16].view(4, 4).nonzero().tolist()  # (row, column)
    assert cells == [[1, 0], [1, 1], [2, 0], [2, 1]]
    assert off.candidates(grid, thin, one)[0, 0, :16].view(4, 4).nonzero().tolist() == [[2, 1]]  # no x centre inside
    # boxes of at least the finest stride each way: the same candidates with and without STAL
    torch.manual_seed(0)
    xy = torch.rand(2, 20, 2) * 24 + 4
    wh = torch.rand(2, 20, 2) * 20 + 8
    big = torch.cat((xy - wh / 2, xy + wh / 2), -1)
    mask = torch.ones(2, 20, dtype=torch.bool)
    assert torch.equal(on.candidates(grid, big, mask), off.candidates(grid, big, mask))


def test_stal_to_the_finest_stride_itself_would_add_nothing(monkeypatch):
    """Why STAL widens to twice the finest stride: widened to the stride itself, a box's inside cells
    are always among the cells holding its centre, which tal takes already."""
    torch.manual_seed(0)
    grid = make_grid([8, 16, 32], [(8, 8), (4, 4), (2, 2)])
    xy = torch.rand(2, 40, 2) * 64
    wh = torch.rand(2, 40, 2) * 8
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
    mask = torch.ones(2, 40, dtype=torch.bool)
    off = TaskAlignedAssigner(10).candidates(grid, boxes, mask)
    real = tal_module.widen_small
    monkeypatch.setattr(tal_module, "widen_small", lambda bx, finest: real(bx, finest / 2))
    assert torch.equal(TaskAlignedAssigner(10, stal=True).candidates(grid, boxes, mask), off)
    monkeypatch.setattr(tal_module, "widen_small", real)
    assert not torch.equal(TaskAlignedAssigner(10, stal=True).candidates(grid, boxes, mask), off)


def test_tal_stal_key_and_bad_values():
    assert build_assigner("tal", FULL).stal is False  # default: TaskAlignedAssigner.optional_hyp
    assert build_assigner("tal", {**FULL, "tal_stal": True}).stal is True
    from utils.config import parse_hyp_set

    assert parse_hyp_set(["tal_stal=true"], dict(FULL), "default.yaml") == {"tal_stal": True}
    with pytest.raises(ValueError, match="expected true or false"):
        parse_hyp_set(["tal_stal=1"], dict(FULL), "default.yaml")
    with pytest.raises(ValueError, match="tal_stal must be true or false"):
        build_assigner("tal", {**FULL, "tal_stal": 1})


def test_dfl_loss_against_definition():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, 16, dtype=torch.float64)
    target = torch.rand(5, 4, dtype=torch.float64) * 14.99
    got = dfl_loss(logits, target)
    want = torch.zeros(5, dtype=torch.float64)
    for i in range(5):
        for s in range(4):
            y = float(target[i, s])
            lo = math.floor(y)
            p = torch.softmax(logits[i, s], 0)
            want[i] += ((lo + 1 - y) * -math.log(p[lo]) + (y - lo) * -math.log(p[lo + 1])) / 4
    torch.testing.assert_close(got, want)
    # a distribution sharply on the right bins costs ~nothing
    sharp = torch.full((1, 4, 16), -30.0, dtype=torch.float64)
    sharp[0, :, 3] = 30.0
    assert float(dfl_loss(sharp, torch.full((1, 4), 3.0, dtype=torch.float64))) < 1e-6


def _model(nc: int = 3, reg_max: int | None = None) -> Model:
    torch.manual_seed(0)
    return Model("yolov5n-dfl.yaml", nc=nc, reg_max=reg_max)


@pytest.mark.parametrize("reg_max", [4, 8, 16])
def test_distances_are_the_expected_bin_under_a_softmax(reg_max):
    """Short bin counts take a faster layout (bins first); value and gradient must not change."""
    det = _model(reg_max=reg_max).detect
    det.set_bin_width(0.5)
    for shape in ((2, 7), (5,)):
        logits = torch.randn(*shape, 4 * reg_max, dtype=torch.float64, requires_grad=True)
        d = det.distances(logits)
        sides = logits.detach().reshape(-1, reg_max).tolist()  # 4 sides of reg_max bins per row, in order
        p = [[math.exp(v) for v in side] for side in sides]
        want = [sum(0.5 * k * e for k, e in enumerate(side)) / sum(side) for side in p]
        torch.testing.assert_close(d.reshape(-1), torch.tensor(want, dtype=torch.float64))
        w = torch.randn_like(d)
        (g,) = torch.autograd.grad((d * w).sum(), logits)
        x = logits.detach().unflatten(-1, (4, reg_max))
        ref = x.softmax(-1) * (det.bins.double() - (x.softmax(-1) * det.bins.double()).sum(-1, keepdim=True))
        torch.testing.assert_close(g, (ref * w[..., None]).flatten(-2))  # d/dx_k E[b] = p_k (b_k - E[b])


def test_head_decodes_distances_and_scores():
    m = _model().eval()
    det = m.detect
    r = det.reg_max
    raw = torch.full((1, 1, 2, 2, 4 * r + 3), -50.0)
    # cell (1, 0) of level 0 (stride 8): l=2, t=1, r=3, b=4 cells; class 2 score 0.8
    for side, d in enumerate((2, 1, 3, 4)):
        raw[0, 0, 0, 1, side * r + d] = 50.0
    raw[0, 0, 0, 1, 4 * r + 2] = math.log(0.8 / 0.2)
    out = det.decode([raw] + [torch.full((1, 1, 1, 1, 4 * r + 3), -50.0)] * 2)
    assert out.shape == (1, 4 + 1 + 1, 5 + 3)
    cx, cy = (1.5 + (3 - 2) / 2) * 8, (0.5 + (4 - 1) / 2) * 8
    torch.testing.assert_close(out[0, 1, :4], torch.tensor([cx, cy, 5 * 8.0, 5 * 8.0]))
    det_ = non_max_suppression(out, conf_thres=0.5)[0]
    assert det_.shape[0] == 1 and int(det_[0, 5]) == 2
    torch.testing.assert_close(det_[0, 4], torch.tensor(0.8))  # obj * cls is the class score


def test_bin_width_scales_the_decoded_distances_and_survives_a_rebuild():
    m = _model().eval()
    det, r = m.detect, m.detect.reg_max
    raw = torch.full((1, 1, 1, 1, 4 * r + 3), -50.0)
    for side, k in enumerate((2, 1, 3, 4)):  # bins 2, 1, 3, 4 of 0.25 cell at stride 8: 4, 2, 6, 8 px
        raw[0, 0, 0, 0, side * r + k] = 50.0
    det.set_bin_width(0.25)
    out = det.decode([raw] + [torch.full((1, 1, 1, 1, 4 * r + 3), -50.0)] * 2)
    torch.testing.assert_close(out[0, 0, :4], torch.tensor([4 + (6 - 4) / 2, 4 + (8 - 2) / 2, 10.0, 10.0]))
    m.yaml["dfl_bin"] = 0.25  # what train.py --dfl-bin writes; checkpoints rebuild from this YAML
    assert Model(m.yaml).detect.bin_width == 0.25 and Model("yolov5n-dfl.yaml").detect.bin_width == 1.0
    with pytest.raises(ValueError, match=r"DetectDFL: expected a DFL bin width in grid cells in \(0, 4\], got 0"):
        det.set_bin_width(0)


def test_reg_max_sizes_the_box_branch_and_needs_a_dfl_head():
    light = Model("yolov5n-dfl.yaml", nc=6, reg_max=4)
    assert light.detect.reg_max == 4 and light.detect.bins.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert Model(light.yaml).detect.reg_max == 4  # checkpoints rebuild from the YAML
    # fewer bins: a narrower box branch (YOLOv8's width rule), 1.77 -> 1.45 GFLOPs at 320 for 6 classes
    assert light.info(320)["gflops"] < 0.83 * Model("yolov5n-dfl.yaml", nc=6).info(320)["gflops"]
    with pytest.raises(ModelConfigError, match="--reg-max 8, but the last layer's args do not name reg_max"):
        Model("yolov5n.yaml", reg_max=8)


def test_model_builds_fuses_and_picks_tal():
    m = _model()
    assert m.yaml["assigner"] == "tal" and m.stride.tolist() == [8.0, 16.0, 32.0]
    info = Model("yolov5n-dfl.yaml").info(640)  # the layout of Ultralytics' YOLOv5nu: 2.65M, 7.7 GFLOPs
    assert 2.645e6 < info["params"] < 2.665e6 and 7.6 < info["gflops"] < 7.8
    x = torch.rand(1, 3, 96, 64)
    m.eval()
    with torch.no_grad():
        y = m(x)
        yf = m.fuse()(x)
    assert y.shape == (1, 12 * 8 + 6 * 4 + 3 * 2, 8)
    torch.testing.assert_close(yf, y, rtol=1e-3, atol=1e-3)


def test_dfl_loss_needs_an_anchor_free_assigner_and_head():
    m = _model()
    m.yaml["assigner"] = "iou"
    with pytest.raises(ValueError, match=r"'iou' needs anchor shapes.*\['atss', 'tal'\]"):
        build_loss(m, FULL, 64)
    with pytest.raises(TypeError, match="DetectDFL"):
        DFLLoss(Model("yolov5n.yaml", nc=3), FULL)


@pytest.mark.parametrize("name, bin_width, reg_max", [("tal", 1.0, None), ("atss", 1.0, None), ("tal", 0.4, None),
                                                       ("tal", 1.0, 4)])
def test_dfl_loss_total_against_slow_reference(name, bin_width, reg_max):
    m = _model(reg_max=reg_max).double().train()
    m.detect.set_bin_width(bin_width)  # --dfl-bin: bin k is k * bin_width grid cells
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    targets = torch.tensor([[0, 0, 20, 20, 4, 5], [1, 2, 40, 30, 30, 20], [1, 1, 10, 50, 12, 8]],
                           dtype=torch.float64)
    hyp = {"dfl_min_w": 0.2, "nwd": 0.5, "assigner": name}
    loss = build_loss(m, {**FULL, **hyp}, 64)
    assert loss.assigner.name == name
    preds = m(x)
    total, items = loss(preds, targets)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters() if p.requires_grad)

    # slow: decode every cell by hand, reuse the (separately tested) assigner, sum by loops
    det, r = m.detect, m.detect.reg_max
    cells, pts, sts = [], [], []
    for i, p in enumerate(preds):
        s = float(det.stride[i])
        for y in range(p.shape[2]):
            for xx in range(p.shape[3]):
                cells.append(p[:, 0, y, xx].detach())
                pts.append([(xx + 0.5) * s, (y + 0.5) * s])
                sts.append(s)
    raw = torch.stack(cells, 1)
    pts, sts = torch.tensor(pts, dtype=torch.float64), torch.tensor(sts, dtype=torch.float64)
    bins = torch.arange(r, dtype=torch.float64) * bin_width
    dist = (raw[..., :4 * r].reshape(2, -1, 4, r).softmax(-1) * bins).sum(-1) * sts[:, None]
    pbox = torch.cat((pts - dist[..., :2], pts + dist[..., 2:]), -1)
    gt = torch.zeros(2, 2, 4, dtype=torch.float64)
    gcls = torch.zeros(2, 2, dtype=torch.long)
    gmask = torch.tensor([[True, False], [True, True]])
    for k, (bi, c, cx, cy, w, h) in enumerate(targets.tolist()):
        slot = 0 if k in (0, 1) else 1
        gt[int(bi), slot] = torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        gcls[int(bi), slot] = int(c)
    cls_logits = raw[..., 4 * r:]
    grid = make_grid(det.stride.tolist(), [tuple(p.shape[2:4]) for p in preds], dtype=torch.float64)
    assert torch.equal(grid.xy, pts) and torch.equal(grid.stride, sts)
    assigner = build_assigner(name, {**FULL, **hyp}, "anchor-free")
    t = assigner(grid, gt, gmask, gt_cls=gcls, pred_scores=cls_logits.sigmoid(), pred_boxes=pbox)
    assert t.fg.any()
    ssum = max(float(t.scores.sum()), 1.0)
    bce = 0.0
    for v, z in zip(cls_logits.flatten().tolist(), t.scores.flatten().tolist()):
        bce += -(z * math.log(1 / (1 + math.exp(-v))) + (1 - z) * math.log(1 - 1 / (1 + math.exp(-v))))
    box = dfl = wsum = 0.0
    for bi, a in torch.nonzero(t.fg).tolist():
        w = max(float(t.scores[bi, a].sum()), 0.2)
        tb = t.boxes[bi, a]
        ciou = float(aligned_iou(pbox[bi, a], tb, "ciou"))
        c1 = (pbox[bi, a, :2] + pbox[bi, a, 2:]) / 2 - (tb[:2] + tb[2:]) / 2
        wh = (pbox[bi, a, 2:] - pbox[bi, a, :2]) - (tb[2:] - tb[:2])
        w2 = float((c1 ** 2).sum() + (wh ** 2).sum() / 4)
        nwd_v = math.exp(-math.sqrt(w2 + 1e-7) / 12.8)
        box += w * (0.5 * (1 - ciou) + 0.5 * (1 - nwd_v))
        px, py = pts[a].tolist()
        ltrb = [px - float(tb[0]), py - float(tb[1]), float(tb[2]) - px, float(tb[3]) - py]
        side_loss = 0.0
        for s_i, d in enumerate(ltrb):
            y = min(max(d / (float(sts[a]) * bin_width), 0.0), r - 1.01)
            lo = math.floor(y)
            lp = raw[bi, a, s_i * r:(s_i + 1) * r].log_softmax(0)
            side_loss += (lo + 1 - y) * -float(lp[lo]) + (y - lo) * -float(lp[lo + 1])
        dfl += w * side_loss / 4
        wsum += w
    wsum = max(wsum, 1.0)
    want = torch.tensor([7.5 * box / wsum, 1.5 * dfl / wsum, 0.5 * bce / ssum], dtype=torch.float64)
    torch.testing.assert_close(items, want, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(total, want.sum() * 2)


@pytest.mark.parametrize("reg_max", [4, 16])
def test_dfl_loss_gradient_matches_finite_differences(reg_max):
    """The loss decodes every cell's box without a gradient (for the assigner) and the positives' boxes
    again with one: with the assignment held fixed, its gradient must be the whole function's. The box term
    is NWD alone here: CIoU's aspect weight is held out of the gradient on purpose (utils/boxes.py)."""
    m = _model(reg_max=reg_max).double().train()
    preds = [p.detach().requires_grad_() for p in m(torch.rand(2, 3, 64, 64, dtype=torch.float64))]
    targets = torch.tensor([[0, 0, 20, 20, 4, 5], [1, 2, 40, 30, 30, 20], [1, 1, 10, 50, 12, 8]],
                           dtype=torch.float64)
    loss = build_loss(m, {**FULL, "dfl_min_w": 0.2, "nwd": 1.0}, 64)
    assigner, fixed = loss.assigner, []

    def frozen(*args, **kwargs):  # targets come from detached predictions: hold them for the finite differences
        if not fixed:
            fixed.append(assigner(*args, **kwargs))
        return fixed[0]

    loss.assigner = frozen
    total, _ = loss(preds, targets)
    assert fixed[0].fg.any()
    grads = torch.autograd.grad(total, preds)
    torch.manual_seed(2)
    for _ in range(3):
        v = [torch.randn_like(p) for p in preds]
        with torch.no_grad():
            hi = loss([p + 1e-6 * u for p, u in zip(preds, v)], targets)[0]
            lo = loss([p - 1e-6 * u for p, u in zip(preds, v)], targets)[0]
        slope = sum((g * u).sum() for g, u in zip(grads, v))
        torch.testing.assert_close(slope, (hi - lo) / 2e-6, rtol=1e-6, atol=1e-9)


def test_close_mosaic_turns_mosaic_off_for_the_last_epochs():
    from utils.engine.trainer import Trainer

    ds = SimpleNamespace(mosaic_p=1.0)
    fake = SimpleNamespace(hyp={"close_mosaic": 2}, epochs=5, main=False,
                           train_loader=SimpleNamespace(dataset=ds, _iterator=None))
    for epoch, want in ((0, 1.0), (2, 1.0), (3, 0.0), (4, 0.0)):
        Trainer._close_mosaic(fake, epoch)
        assert ds.mosaic_p == want, epoch


@pytest.mark.slow
def test_train_dfl_head_end_to_end(tiny_coco, tmp_path, monkeypatch):
    """train.py with the DFL head: box/dfl/cls columns, steps that change the weights, close_mosaic
    turning mosaic off for the last epoch, and best.pt (trained weights) scoring in val.py."""
    import csv

    import train
    import val
    from tests.train_probe import TrainProbe, moved
    from utils.checkpoints.checkpoint import read_checkpoint

    probe = TrainProbe(monkeypatch)  # counts mosaics in this process: workers=0
    res = train.run(data=str(tiny_coco), cfg="yolov5n-dfl.yaml", imgsz=64, batch_size=4, workers=0,
                    epochs=3, project=str(tmp_path), name="dfl", noplots=True, hyp_set=["close_mosaic=1", "nbs=4"])
    run_dir = Path(res["save_dir"])
    with open(run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and "train/dfl_loss" in rows[0] and "train/obj_loss" not in rows[0]
    assert all(float(r["train/cls_loss"]) > 0 and float(r["train/dfl_loss"]) > 0 for r in rows)
    assert probe.mosaics[0] == probe.mosaics[1] == 8 and probe.mosaics[2] == 0  # mosaic 1.0, closed for the last
    best = read_checkpoint(run_dir / "weights" / "best.pt")
    assert best["ema_updates"] >= 2 and moved(probe.initial, best["model"]) > 0.9  # not the untrained model
    m = val.run(data=str(tiny_coco), weights=str(run_dir / "weights" / "best.pt"), imgsz=64,
                project=str(tmp_path), name="v", plots=False)
    assert set(m) >= {"AP", "AP50", "fitness"} and all(math.isfinite(m[k]) for k in ("AP", "AP50"))


def test_dfl_bin_flag_fits_the_bins_and_the_checkpoint_keeps_them(tiny_coco, tmp_path):
    import train
    from utils.data.config import load_data_config
    from utils.data.recipe import fit_dfl_bin, read_sizes
    from utils.checkpoints.checkpoint import model_from_checkpoint, read_checkpoint

    res = train.run(data=str(tiny_coco), cfg="yolov5n-dfl.yaml", imgsz=64, batch_size=4, workers=0, epochs=1,
                    project=str(tmp_path), name="fit", noplots=True, dfl_bin="auto", reg_max=8, hyp_set=["nbs=4"])
    ck = read_checkpoint(Path(res["save_dir"]) / "weights" / "last.pt")
    width = model_from_checkpoint(ck, "model", "last.pt").detect.bin_width
    split = load_data_config(tiny_coco)["train"]  # the fit by hand: imgsz 64, no tiles, default.yaml's scale
    want, _ = fit_dfl_bin(read_sizes(split["json"], split["images"]), 64, 0.0, [8, 16, 32], 8, FULL["scale"])
    assert width == ck["model_yaml"]["dfl_bin"] == want != 1.0
    assert ck["model_yaml"]["reg_max"] == 8 and ck["model"]["model.24.box.0.2.weight"].shape[0] == 4 * 8
    with pytest.raises(ValueError, match="--dfl-bin: yolov5n.yaml has an anchor head"):
        train.run(data=str(tiny_coco), cfg="yolov5n.yaml", imgsz=64, epochs=1, project=str(tmp_path),
                  name="anchor", noplots=True, dfl_bin="0.5")
    assert not (tmp_path / "anchor").exists()
    from models.config import load_model_config
    from utils.engine.build import set_dfl_bin
    cfg = load_model_config("yolov5n-dfl.yaml")
    cfg["head"][-1][3] = ["nc", 16]  # a YAML whose head never reads dfl_bin: its checkpoints would decode 1-cell bins
    with pytest.raises(ValueError, match="--dfl-bin 0.5: bin width 0.5, but the DetectDFL args of mine.yaml do not "
                                         "name dfl_bin"):
        set_dfl_bin(Model(cfg, nc=2), SimpleNamespace(cfg="mine.yaml", dfl_bin="0.5", weights=""), {}, {})
    # fine-tuning: the bins the weights learned come along unless --dfl-bin says otherwise; a resume keeps its own
    tuned = train.run(data=str(tiny_coco), cfg="yolov5n-dfl.yaml", weights=str(Path(res["save_dir"]) / "weights" /
                      "last.pt"), imgsz=64, batch_size=4, workers=0, epochs=1, project=str(tmp_path), name="tune",
                      noplots=True, hyp_set=["nbs=4"])
    assert read_checkpoint(Path(tuned["save_dir"]) / "weights" / "last.pt")["model_yaml"]["dfl_bin"] == want
    m = Model("yolov5n-dfl.yaml", nc=2)
    set_dfl_bin(m, SimpleNamespace(cfg="yolov5n-dfl.yaml", dfl_bin="auto", weights=""), {}, {},
                ckpt={"model_yaml": {"dfl_bin": 0.35}})
    assert m.detect.bin_width == m.yaml["dfl_bin"] == 0.35


def test_p2_dfl_variant_has_a_stride_4_level():
    m = Model("yolov5n-p2-dfl.yaml", nc=2).eval()
    assert m.stride.tolist() == [4.0, 8.0, 16.0, 32.0] and m.yaml["assigner"] == "tal"
    with torch.no_grad():
        assert m(torch.rand(1, 3, 64, 64)).shape == (1, 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2, 7)


def test_p2_fast_is_yolov5_dfl_with_a_stride_4_side_branch():
    """yolov5n-p2-dfl-fast: yolov5n-dfl's backbone and PAN unchanged, plus a 1x1 conv over [upsampled P3,
    backbone P2] feeding a stride-4 head level; nothing flows back up from it."""
    def shapes(mods):
        return [tuple(p.shape) for m in mods for p in m.parameters()]

    fast, base = Model("yolov5n-p2-dfl-fast.yaml", nc=6, reg_max=4), Model("yolov5n-dfl.yaml", nc=6, reg_max=4)
    assert fast.stride.tolist() == [4.0, 8.0, 16.0, 32.0]
    assert shapes(fast.model[:18]) == shapes(base.model[:18])        # backbone and the top-down path to P3
    assert shapes(fast.model[22:28]) == shapes(base.model[18:24])    # P3 -> P4 -> P5, from P3 itself
    assert fast.model[22].f == 17 and fast.detect.f == [21, 17, 24, 27]
    p2 = fast.model[21].conv
    assert (p2.kernel_size, p2.in_channels, p2.out_channels) == ((1, 1), 64, 32)
    # the head is yolov5n-p2-dfl's (whose class towers take the width of the stride-4 input)
    assert shapes([fast.detect]) == shapes([Model("yolov5n-p2-dfl.yaml", nc=6, reg_max=4).detect])
    with torch.no_grad():
        assert fast.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2, 4 + 1 + 6)
