"""DetectionLoss against a cell-by-cell reference, gradient flow, and a tiny over-fit run."""
import math

import pytest
import torch
import torch.nn as nn
import torchvision.ops as tvops

from models.head import Detect
from utils.assign import build_assigner, make_grid
from utils.config import default_hyp
from utils.loss.anchor import DetectionLoss, level_balance
from utils.loss.common import targets_to_padded

FULL = default_hyp()  # the losses read every value from the hyp they are given

ANCHORS3 = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


class StandIn(nn.Module):
    """Detect-like attributes only: enough for DetectionLoss."""

    def __init__(self, nc=4, anchors=ANCHORS3, strides=(8, 16, 32), assigner="iou"):
        super().__init__()
        self.detect = nn.Module()
        self.detect.nc, self.detect.nl = nc, len(strides)
        self.detect.anchors = torch.tensor(anchors, dtype=torch.float32).view(len(strides), -1, 2)
        self.detect.na = self.detect.anchors.shape[1]
        self.detect.stride = torch.tensor(strides, dtype=torch.float32)
        self.yaml = {"assigner": assigner}


def random_preds(model, b, hw, gen, dtype=torch.float64):
    det = model.detect
    return [(torch.randn(b, det.na, math.ceil(hw[0] / s), math.ceil(hw[1] / s), det.nc + 5,
                         generator=gen, dtype=dtype)).requires_grad_(True)
            for s in det.stride.tolist()]


def random_targets(b, n, hw, nc, gen):
    bi = torch.randint(0, b, (n, 1), generator=gen).double()
    cls = torch.randint(0, nc, (n, 1), generator=gen).double()
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 60 + 2
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * torch.tensor(hw[::-1]).double()
    return torch.cat((bi, cls, xy, wh), 1)


def bce(logit: float, t: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def reference_loss(model, preds, targets, hyp, imgsz, assigner):
    """Cell-by-cell YOLOv5 loss for a given assignment (loops, no vectorisation)."""
    det = model.detect
    nl, na, nc = det.nl, det.na, det.nc
    strides = det.stride.tolist()
    b = preds[0].shape[0]
    shapes = [tuple(p.shape[2:4]) for p in preds]
    grid = make_grid(strides, shapes, det.anchors.double())
    boxes, cls, mask = targets_to_padded(targets, b)
    assigned = assigner(grid, boxes, mask)
    fg, gt_idx = assigned.fg, assigned.gt_idx
    # the boxes each position learns: all the pairs the assigner lists (YOLOv5's rule: several boxes, or one
    # box twice), else the one box of each positive; the objectness target is that of the box gt_idx names
    learners = {}
    if assigned.pairs is not None:
        for bi, k, g in assigned.pairs.tolist():
            learners.setdefault((bi, k), []).append(g)
    else:
        for bi, k in fg.nonzero().tolist():
            learners[(bi, k)] = [gt_idx[bi, k].item()]
    eps = hyp.get("label_smoothing", 0.0)
    cp, cn = 1 - eps / 2, eps / 2
    w_nwd, c_nwd = hyp.get("nwd", 0.0), hyp.get("nwd_c", 12.8)
    lbox = lobj = lcls = 0.0
    start = 0
    for lvl, (p, s) in enumerate(zip(preds, strides)):
        _, _, h, w, _ = p.shape
        box_terms, cls_terms, obj_terms = [], [], []
        for bi in range(b):
            for a in range(na):
                for y in range(h):
                    for x in range(w):
                        k = start + (a * h + y) * w + x
                        t = p[bi, a, y, x].detach().tolist()
                        tobj = 0.0
                        for g in learners.get((bi, k), []):
                            sig = [1 / (1 + math.exp(-v)) for v in t[:4]]
                            px, py = (2 * sig[0] - 0.5 + x) * s, (2 * sig[1] - 0.5 + y) * s
                            pw = (2 * sig[2]) ** 2 * det.anchors[lvl, a, 0].item()
                            ph = (2 * sig[3]) ** 2 * det.anchors[lvl, a, 1].item()
                            pbox = [px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2]
                            tb = boxes[bi, g].tolist()
                            ciou = tvops.complete_box_iou(torch.tensor([pbox]).double(),
                                                          torch.tensor([tb]).double()).item()
                            cx_t, cy_t = (tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2
                            w2 = ((px - cx_t) ** 2 + (py - cy_t) ** 2
                                  + ((pw - (tb[2] - tb[0])) / 2) ** 2
                                  + ((ph - (tb[3] - tb[1])) / 2) ** 2)
                            nwd = math.exp(-math.sqrt(w2) / c_nwd)
                            box_terms.append((1 - w_nwd) * (1 - ciou) + w_nwd * (1 - nwd))
                            if g == gt_idx[bi, k].item():
                                tobj = max(0.0, (1 - w_nwd) * ciou + w_nwd * nwd)
                            c = cls[bi, g].item()
                            cls_terms.append(sum(bce(t[5 + j], cp if j == c else cn)
                                                 for j in range(nc)) / nc)
                        obj_terms.append(bce(t[4], tobj))
        if box_terms:
            lbox += sum(box_terms) / len(box_terms)
            lcls += sum(cls_terms) / len(cls_terms)
        lobj += {4: 16.0, 8: 4.0, 16: 1.0, 32: 0.4}[int(s)] * sum(obj_terms) / len(obj_terms)
        start += na * h * w
    lbox *= hyp["box"] * 3 / nl
    lobj *= hyp["obj"] * (imgsz / 640) ** 2 * 3 / nl
    lcls *= hyp["cls"] * nc / 80 * 3 / nl
    return [lbox, lobj, lcls], (sum(map(len, learners.values())), len(learners))


HYP = {"box": 0.05, "obj": 1.0, "cls": 0.5}


@pytest.mark.parametrize("name,extra,strides", [
    ("iou", {}, (8, 16, 32)),
    ("iou", {"label_smoothing": 0.1, "nwd": 0.5}, (4, 8, 16, 32)),
    ("atss", {}, (8, 16, 32)),
    ("atss", {"nwd": 1.0, "nwd_c": 6.0, "atss_nwd": True}, (4, 8, 16, 32)),
])
def test_loss_matches_cell_by_cell_reference(name, extra, strides):
    gen = torch.Generator().manual_seed(0)
    anchors = ANCHORS3 if len(strides) == 3 else [[5, 6, 8, 14, 15, 11]] + ANCHORS3
    model = StandIn(nc=3, anchors=anchors, strides=strides)
    hw, imgsz = (48, 64), 64
    preds = random_preds(model, 2, hw, gen)
    targets = random_targets(2, 9, hw, 3, gen)
    hyp = {**HYP, **extra}
    loss = DetectionLoss(model, {**FULL, **hyp}, imgsz, assigner=name)
    total, items = loss(preds, targets)
    ref, (n_pairs, n_pos) = reference_loss(model, preds, targets, hyp, imgsz, build_assigner(name, {**FULL, **hyp}))
    assert n_pos > 0
    assert (n_pairs > n_pos) == (name == "iou")  # YOLOv5's rule: some positions learn several boxes
    # CIoU eps placement differs slightly from torchvision (~1e-8 relative)
    assert items.tolist() == pytest.approx(ref, rel=1e-6, abs=1e-12)
    assert total.item() == pytest.approx(sum(ref) * 2, rel=1e-6)


def test_gradients_flow_to_positives_and_all_objectness():
    gen = torch.Generator().manual_seed(1)
    model = StandIn(nc=3)
    preds = random_preds(model, 2, (64, 64), gen)
    targets = random_targets(2, 6, (64, 64), 3, gen)
    loss = DetectionLoss(model, FULL, 64)
    total, items = loss(preds, targets)
    assert torch.isfinite(total) and (items > 0).all()
    total.backward()
    shapes = [tuple(p.shape[2:4]) for p in preds]
    grid = make_grid([8, 16, 32], shapes, model.detect.anchors)
    boxes, _, mask = targets_to_padded(targets, 2)
    fg = loss.assigner(grid, boxes.float(), mask).fg
    grad_box = torch.cat([p.grad[..., :4].abs().sum(-1).reshape(2, -1) for p in preds], 1)
    assert torch.equal(grad_box > 0, fg)  # box/cls grads exactly at the positives
    assert all((p.grad[..., 4] != 0).all() for p in preds)  # objectness everywhere


@pytest.mark.parametrize("name", ["iou", "atss"])
def test_images_without_boxes(name):
    gen = torch.Generator().manual_seed(2)
    model = StandIn(nc=3)
    preds = random_preds(model, 3, (64, 64), gen)
    loss = DetectionLoss(model, FULL, 640, assigner=name)
    for targets in (torch.zeros(0, 6, dtype=torch.float64),  # no boxes in the batch
                    random_targets(1, 4, (64, 64), 3, gen)):  # boxes only in image 0
        total, items = loss(preds, targets)
        assert torch.isfinite(total)
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in preds)
    total, items = loss(preds, torch.zeros(0, 6))
    assert items[0] == 0 and items[2] == 0 and items[1] > 0


def test_targets_to_padded_matches_loop():
    gen = torch.Generator().manual_seed(3)
    t = random_targets(4, 11, (64, 64), 5, gen)
    t[:, 0] = torch.tensor([2, 0, 2, 3, 0, 2, 2, 0, 3, 3, 2]).double()  # image 1 empty
    boxes, cls, mask = targets_to_padded(t, 4)
    assert boxes.shape == (4, 5, 4) and mask.sum(1).tolist() == [3, 0, 5, 3]
    for bi in range(4):
        rows = t[t[:, 0] == bi]
        assert torch.allclose(boxes[bi, :len(rows)], torch.cat(
            (rows[:, 2:4] - rows[:, 4:6] / 2, rows[:, 2:4] + rows[:, 4:6] / 2), 1))
        assert cls[bi, :len(rows)].tolist() == rows[:, 1].long().tolist()
    with pytest.raises(ValueError, match="batch indices"):
        targets_to_padded(t, 3)
    with pytest.raises(ValueError, match=r"\(M, 6\)"):
        targets_to_padded(t[:, :5], 4)


def test_gains_balance_and_assigner_choice():
    assert [level_balance(s) for s in (8, 16, 32, 64)] == [4.0, 1.0, 0.4, 0.06]
    assert level_balance(4) == 16.0  # equal weight per cell as P3 (see utils/loss/anchor.py)
    p2 = StandIn(nc=20, anchors=[[5, 6, 8, 14, 15, 11]] + ANCHORS3, strides=(4, 8, 16, 32),
                 assigner="atss")
    loss = DetectionLoss(p2, {**FULL, "box": 0.05, "obj": 1.0, "cls": 0.5}, 320)
    assert loss.balance == [16.0, 4.0, 1.0, 0.4]  # by stride, not by index
    assert loss.box_gain == pytest.approx(0.05 * 3 / 4)
    assert loss.cls_gain == pytest.approx(0.5 * 20 / 80 * 3 / 4)
    assert loss.obj_gain == pytest.approx(1.0 * 0.25 * 3 / 4)
    assert loss.assigner_name == "atss"  # from the model YAML
    assert DetectionLoss(p2, {**FULL, "assigner": "iou"}, 640).assigner_name == "iou"  # hyp overrides
    assert DetectionLoss(p2, {**FULL, "assigner": "iou"}, 640, assigner="atss").assigner_name == "atss"
    with pytest.raises(ValueError, match="unknown assigner"):
        DetectionLoss(p2, {**FULL, "assigner": "nope"}, 640)
    with pytest.raises(ValueError, match="nc=20"):
        gen = torch.Generator().manual_seed(0)
        t = random_targets(1, 2, (64, 64), 20, gen)
        t[0, 1] = 25
        loss(random_preds(p2, 1, (64, 64), gen), t)


def _focal_by_hand(x: float, t: float, pos_weight: float, gamma: float, alpha: float) -> float:
    """Lin et al. 2017 on one logit, spelled out: BCE (positive term weighted) times alpha_t
    (alpha for the positive part, 1 - alpha for the negative) times (1 - p_t)^gamma."""
    p = 1.0 / (1.0 + math.exp(-x))
    bce = -(pos_weight * t * math.log(p) + (1.0 - t) * math.log(1.0 - p))
    if gamma == 0:
        return bce
    p_t = t * p + (1.0 - t) * (1.0 - p)
    alpha_t = t * alpha + (1.0 - t) * (1.0 - alpha)
    return bce * alpha_t * (1.0 - p_t) ** gamma


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5, 2.0])  # 0.5: focal is on for any gamma > 0
@pytest.mark.parametrize("pos_weight", [1.0, 2.5])
def test_focal_bce_matches_the_formula_elementwise(gamma, pos_weight):
    from utils.loss.common import bce as _bce

    logits = torch.tensor([-4.0, -1.0, -0.2, 0.0, 0.3, 1.0, 3.0], dtype=torch.float64)
    for t in (0.0, 1.0, 0.35):  # hard negatives, positives, and a soft (IoU-aware) target
        target = torch.full_like(logits, t)
        got = _bce(logits, target, torch.tensor(pos_weight, dtype=torch.float64), gamma)
        want = [_focal_by_hand(x, t, pos_weight, gamma, 0.25) for x in logits.tolist()]
        assert got.tolist() == pytest.approx(want, rel=1e-9, abs=1e-12), (t, gamma)
    # the default alpha is the paper's 0.25 for positives: a confident miss on a positive
    # weighs a third of the same miss on a negative
    pos = _bce(torch.tensor([-2.0]), torch.tensor([1.0]), torch.tensor(1.0), 2.0)
    neg = _bce(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor(1.0), 2.0)
    assert float(pos / neg) == pytest.approx(0.25 / 0.75)


def test_focal_loss_is_finite_and_smaller():
    gen = torch.Generator().manual_seed(4)
    model = StandIn(nc=3)
    preds = random_preds(model, 2, (64, 64), gen)
    targets = random_targets(2, 6, (64, 64), 3, gen)
    _, plain = DetectionLoss(model, FULL, 640)(preds, targets)
    loss = DetectionLoss(model, {**FULL, "fl_gamma": 1.5}, 640)
    assert loss.gamma == 1.5
    total, focal = loss(preds, targets)
    assert torch.isfinite(total)
    # focal down-weights every element (alpha_t <= 0.75, (1 - p_t)^gamma < 1); box is untouched
    assert focal[0] == plain[0] and focal[1] < 0.75 * plain[1] and focal[2] < 0.75 * plain[2]


class TinyNet(nn.Module):
    """Three strided convs feeding the real Detect head (strides 8, 16, 32)."""

    def __init__(self, nc, assigner):
        super().__init__()
        act = nn.SiLU
        self.s8 = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), act(), nn.Conv2d(16, 32, 3, 2, 1), act(),
                                nn.Conv2d(32, 32, 3, 2, 1), act())
        self.s16 = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), act())
        self.s32 = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), act())
        self.detect = Detect(nc, ANCHORS3, [32, 32, 32])
        self.detect.stride = torch.tensor([8.0, 16.0, 32.0])
        self.detect.init_biases(64)
        self.yaml = {"assigner": assigner}

    def forward(self, x):
        a = self.s8(x)
        b = self.s16(a)
        return self.detect([a, b, self.s32(b)])


@pytest.mark.parametrize("name", ["iou", "atss"])
def test_tiny_model_overfits_one_image(name):
    torch.manual_seed(0)
    model = TinyNet(nc=3, assigner=name)
    img = torch.rand(1, 3, 64, 64)
    targets = torch.tensor([[0, 0, 20, 20, 12, 16], [0, 1, 44, 40, 20, 10], [0, 2, 30, 50, 6, 6]],
                           dtype=torch.float32)
    loss_fn = DetectionLoss(model, FULL, 64)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = None
    for _ in range(120):
        total, _ = loss_fn(model(img), targets)
        first = first if first is not None else total.item()
        opt.zero_grad()
        total.backward()
        opt.step()
    assert total.item() < first / 5
    # and the decoded top detection per class lands on its box
    model.eval()
    with torch.no_grad():
        out = model(img)[0]  # (N, 8): xywh, obj, cls
    score = out[:, 4:5] * out[:, 5:]
    gt = torch.cat((targets[:, 2:4] - targets[:, 4:6] / 2, targets[:, 2:4] + targets[:, 4:6] / 2), 1)
    for c in range(3):
        top = out[score[:, c].argmax(), :4]
        top = torch.cat((top[:2] - top[2:] / 2, top[:2] + top[2:] / 2))
        assert tvops.box_iou(top[None], gt[c:c + 1]).item() > 0.5


@pytest.mark.parametrize("name", ["iou", "atss"])
def test_real_p2_model_wiring(name):
    from models.yolo import Model

    torch.manual_seed(0)
    model = Model("yolov5n-p2.yaml", nc=3)
    loss_fn = DetectionLoss(model, {**FULL, "assigner": name}, 64)
    assert loss_fn.strides == [4.0, 8.0, 16.0, 32.0] and loss_fn.balance[0] == 16.0
    targets = torch.tensor([[0, 0, 20, 20, 4, 5], [1, 2, 40, 30, 30, 20]], dtype=torch.float32)
    total, items = loss_fn(model(torch.rand(2, 3, 64, 64)), targets)
    assert torch.isfinite(total) and (items > 0).all()
    total.backward()
    assert all(c.weight.grad.abs().sum() > 0 for c in model.detect.m)


@pytest.mark.parametrize("cfg", ["yolov5n.yaml", "yolov5n-spd.yaml", "yolov5n-asff.yaml", "yolov5n-dfl.yaml"])
def test_channels_last_training_matches_contiguous(cfg):
    """train.py runs weights and batches channels-last (faster oneDNN convolutions): same loss and
    gradients as the plain NCHW layout."""
    import copy

    from models.yolo import Model
    from utils.loss import build_loss

    torch.manual_seed(0)
    plain = Model(cfg, nc=3).double().train()
    nhwc = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 96, dtype=torch.float64)
    targets = torch.tensor([[0, 0, 20, 20, 4, 5], [1, 2, 40, 30, 30, 20]], dtype=torch.float64)
    losses = []
    for model, inp in ((plain, x), (nhwc, x.contiguous(memory_format=torch.channels_last))):
        total, _ = build_loss(model, FULL, 96)(model(inp), targets)
        total.backward()
        losses.append(total.detach())
    conv = next(m for m in nhwc.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(losses[1], losses[0])
    for (name, a), b in zip(plain.named_parameters(), nhwc.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)


def test_build_loss_takes_the_image_size_and_the_hyp_values():
    from models.yolo import Model
    from utils.loss import DFLLoss, build_loss

    p2 = StandIn(nc=3, anchors=[[5, 6, 8, 14, 15, 11]] + ANCHORS3, strides=(4, 8, 16, 32))
    p2.detect.anchor_free = False
    assert build_loss(p2, FULL, 320).obj_gain == pytest.approx(FULL["obj"] * 0.25 * 3 / 4)
    assert isinstance(build_loss(Model("yolov5n-dfl.yaml", nc=3), FULL, 320), DFLLoss)
    with pytest.raises(KeyError, match="box"):  # defaults live in configs/hyps/default.yaml only
        DetectionLoss(p2, {}, 320)
    # the task-aligned assigner needs the DFL head's predictions; the error names what fits instead
    with pytest.raises(ValueError, match=r"'tal' needs .*\['atss', 'iou'\]"):
        DetectionLoss(p2, {**FULL, "assigner": "tal"}, 320)
    with pytest.raises(TypeError, match="DFLLoss"):
        DetectionLoss(Model("yolov5n-dfl.yaml", nc=3), FULL, 320)
