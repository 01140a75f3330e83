"""Ignore regions (targets of class IGNORE_CLASS) in both losses and every assigner: a position whose cell
centre lies in one gives no loss and gets no gradient; everything else is exactly what it was."""
import math

import pytest
import torch

from models.yolo import Model
from tests.loss.test_loss import StandIn, random_preds
from utils.boxes import IGNORE_CLASS
from utils.config import default_hyp
from utils.loss import build_loss
from utils.loss.anchor import DetectionLoss
from utils.loss.ignore import ignored_positions, split_ignore

FULL = default_hyp()
HW = (64, 96)
# image 0: a box at the left, an ignore region at the right holding a second (labelled) box;
# image 1: one box, no region
OBJECTS = torch.tensor([[0, 1, 14, 20, 10, 12], [0, 2, 80, 44, 10, 10], [1, 0, 40, 30, 20, 16]],
                       dtype=torch.float64)
REGION = torch.tensor([[0, IGNORE_CLASS, 78, 40, 30, 40]], dtype=torch.float64)  # x 63..93, y 20..60


def _points(preds, strides, na):
    """(A, 2) cell centres in the positions' order (level, anchor, y, x)."""
    pts = []
    for p, s in zip(preds, strides):
        h, w = p.shape[-3], p.shape[-2]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        xy = torch.stack(((xs + 0.5) * s, (ys + 0.5) * s), -1).reshape(-1, 2).double()
        pts.append(xy.repeat(na, 1))
    return torch.cat(pts)


def _flat(preds):
    """(B, A, C) of the raw maps, positions in the head's order."""
    return torch.cat([p.reshape(p.shape[0], -1, p.shape[-1]) for p in preds], 1)


def _anchor_case(assigner):
    m = StandIn(nc=3, assigner=assigner)
    loss = DetectionLoss(m, FULL, 320)
    preds = random_preds(m, 2, HW, torch.Generator().manual_seed(0))
    return loss, preds, m.detect.stride.tolist(), m.detect.na


def _dfl_case(assigner):
    torch.manual_seed(0)
    m = Model("yolov5n-dfl.yaml", nc=3, reg_max=4).double().train()
    loss = build_loss(m, {**FULL, "assigner": assigner, "dfl_min_w": 0.2}, 96)
    x = torch.rand(2, 3, *HW, dtype=torch.float64)
    preds = [p.detach().requires_grad_(True) for p in m(x)]
    return loss, preds, m.detect.stride.tolist(), 1


CASES = [("anchor", "iou"), ("anchor", "atss"), ("anchor-free", "tal"), ("anchor-free", "atss")]


def _case(head, assigner):
    return _anchor_case(assigner) if head == "anchor" else _dfl_case(assigner)


@pytest.mark.parametrize("head, assigner", CASES)
def test_positions_in_an_ignore_region_get_no_loss_and_no_gradient(head, assigner):
    loss, preds, strides, na = _case(head, assigner)
    targets = torch.cat((OBJECTS, REGION))
    total, items = loss(preds, targets)
    total.backward()
    inside = torch.zeros(2, _points(preds, strides, na).shape[0], dtype=torch.bool)
    pts = _points(preds, strides, na)
    x1, y1, x2, y2 = 63, 20, 93, 60
    inside[0] = (pts[:, 0] >= x1) & (pts[:, 0] <= x2) & (pts[:, 1] >= y1) & (pts[:, 1] <= y2)
    assert inside[0].sum() > 10 and not inside[1].any()
    grad = _flat([p.grad for p in preds])
    assert (grad[inside] == 0).all()                      # not a single gradient in the region
    assert (grad[~inside] != 0).any(-1).float().mean() > 0.9  # outside, positions still learn
    assert torch.isfinite(total) and (items > 0).all()

    # zero loss there: any predictions at those positions leave the total as it was
    with torch.no_grad():
        for p, s in zip(preds, strides):
            h, w = p.shape[-3], p.shape[-2]
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            cell = ((xs + 0.5) * s >= x1) & ((xs + 0.5) * s <= x2) & ((ys + 0.5) * s >= y1) & ((ys + 0.5) * s <= y2)
            p[0].masked_scatter_(cell[None, :, :, None].expand_as(p[0]),
                                 torch.randn(int(cell.sum()) * p.shape[1] * p.shape[-1], dtype=p.dtype) * 5)
    again, _ = loss(preds, targets)
    torch.testing.assert_close(again, total, rtol=1e-12, atol=0)


@pytest.mark.parametrize("head, assigner", CASES)
def test_a_region_over_no_cell_centre_changes_nothing_bit_for_bit(head, assigner):
    """The ignore path itself leaves every other position exactly as the plain loss has it."""
    loss, preds, _, _ = _case(head, assigner)
    plain, plain_items = loss(preds, OBJECTS)
    g_plain = torch.autograd.grad(plain, preds)
    # x, y in 1..3 px: short of every level's first cell centre (4, 8, 16 px), so no position is inside
    nowhere = torch.tensor([[1, IGNORE_CLASS, 2, 2, 2, 2]], dtype=torch.float64)
    with_region, items = loss(preds, torch.cat((OBJECTS, nowhere)))
    g_region = torch.autograd.grad(with_region, preds)
    assert torch.equal(plain, with_region) and torch.equal(plain_items, items)
    assert all(torch.equal(a, b) for a, b in zip(g_plain, g_region))


@pytest.mark.parametrize("head, assigner", CASES)
def test_a_box_inside_an_ignore_region_is_no_positive(head, assigner):
    """The labelled box at (80, 44) lies wholly in the region: it contributes nothing, so the loss equals
    that of the targets without it (the region covers the positions it would have had)."""
    loss, preds, _, _ = _case(head, assigner)
    with_box, _ = loss(preds, torch.cat((OBJECTS, REGION)))
    without_box, _ = loss(preds, torch.cat((OBJECTS[[0, 2]], REGION)))
    if head == "anchor-free":
        # TAL / ATSS normalise the class loss by the sum of all soft targets; the box's own targets there are
        # zeroed, so the totals agree up to rounding of the same sums
        torch.testing.assert_close(with_box, without_box, rtol=1e-9, atol=0)
    else:
        torch.testing.assert_close(with_box, without_box, rtol=1e-12, atol=0)


def test_split_ignore_returns_the_same_tensor_without_regions():
    t = OBJECTS.clone()
    objects, regions = split_ignore(t)
    assert objects is t and regions is None
    objects, regions = split_ignore(torch.cat((OBJECTS, REGION)))
    assert torch.equal(objects, OBJECTS) and torch.equal(regions, REGION)


def test_ignored_positions_against_a_loop():
    gen = torch.Generator().manual_seed(1)
    pts = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 100
    regions = torch.tensor([[0, -1, 30, 30, 20, 10], [2, -1, 70, 50, 40, 40], [2, -1, 10, 90, 8, 8]],
                           dtype=torch.float64)
    got = ignored_positions(pts, regions, 3)
    want = torch.zeros(3, 200, dtype=torch.bool)
    for b, _, cx, cy, w, h in regions.tolist():
        for a, (x, y) in enumerate(pts.tolist()):
            if cx - w / 2 <= x <= cx + w / 2 and cy - h / 2 <= y <= cy + h / 2:
                want[int(b), a] = True
    assert torch.equal(got, want) and want[0].any() and want[2].any() and not want[1].any()
    assert math.isclose(float(got.float().mean()), float(want.float().mean()))
