"""utils/grid.py: the one cell grid and the two box decodes that the heads and the losses share, each against a
slow, obvious re-implementation, and the grid cache both keep."""
import math

import torch

from utils.grid import GridCache, anchor_boxes, distance_boxes, make_grid


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_anchor_boxes_are_yolov5s_decode_cell_by_cell():
    """xy = (2 sig - 0.5 + cell) * stride, wh = (2 sig)^2 * anchor, for every position in grid order
    (level, anchor, y, x); logits spread wide, so sigmoids near 0 and 1 are covered."""
    strides, shapes = [8, 16], [(3, 5), (2, 2)]
    anchors = torch.tensor([[[10.0, 13.0], [16.0, 30.0]], [[30.0, 61.0], [62.0, 45.0]]], dtype=torch.float64)
    grid = make_grid(strides, shapes, anchors)
    t = torch.randn(grid.num, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    xy, wh = anchor_boxes(t[:, :2].sigmoid(), t[:, 2:].sigmoid(), grid.xy, grid.stride[:, None], grid.wh)
    got, k = torch.cat((xy, wh), 1).tolist(), 0
    for lvl, ((h, w), s) in enumerate(zip(shapes, strides)):
        for a in range(2):
            aw, ah = anchors[lvl, a].tolist()
            for y in range(h):
                for x in range(w):
                    tx, ty, tw, th = t[k].tolist()
                    want = [(2 * sig(tx) - 0.5 + x) * s, (2 * sig(ty) - 0.5 + y) * s,
                            (2 * sig(tw)) ** 2 * aw, (2 * sig(th)) ** 2 * ah]
                    assert all(math.isclose(g, v, rel_tol=1e-12, abs_tol=1e-12) for g, v in zip(got[k], want)), k
                    k += 1
    assert k == grid.num


def test_distance_boxes_put_the_four_sides_around_the_centre():
    gen = torch.Generator().manual_seed(1)
    ltrb = torch.rand(3, 7, 4, dtype=torch.float64, generator=gen) * 50
    centre = torch.rand(3, 7, 2, dtype=torch.float64, generator=gen) * 300
    xyxy, xywh = distance_boxes(ltrb, centre), distance_boxes(ltrb, centre, xywh=True)
    rows = zip(ltrb.view(-1, 4).tolist(), centre.view(-1, 2).tolist(), xyxy.view(-1, 4).tolist(),
               xywh.view(-1, 4).tolist())
    for (left, top, right, bottom), (cx, cy), box, cbox in rows:
        x1, y1, x2, y2 = cx - left, cy - top, cx + right, cy + bottom
        for g, v in zip(box + cbox, [x1, y1, x2, y2, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]):
            assert math.isclose(g, v, rel_tol=1e-12, abs_tol=1e-9)


def test_grid_cache_reuses_a_grid_until_its_sizes_strides_or_anchors_change():
    cache, cpu = GridCache(size=2), torch.device("cpu")
    anchors = torch.tensor([[[10.0, 13.0]], [[30.0, 61.0]]])
    g = cache.get([8, 16], [(4, 4), (2, 2)], anchors, cpu, torch.float32)
    assert cache.get([8.0, 16.0], [(4, 4), (2, 2)], anchors, cpu, torch.float32) is g
    anchors.mul_(2)  # as autoanchor does, in place
    g2 = cache.get([8, 16], [(4, 4), (2, 2)], anchors, cpu, torch.float32)
    assert g2 is not g and torch.equal(g2.wh[:16], torch.tensor([[20.0, 26.0]]).expand(16, 2))
    g3 = cache.get([4, 8], [(4, 4), (2, 2)], anchors, cpu, torch.float32)  # strides set after a dry run
    assert g3 is not g2 and g3.stride[0] == 4
    assert cache.get([8, 16], [(4, 4), (2, 2)], anchors, cpu, torch.float64).xy.dtype == torch.float64
    # two kept: the float32 grid at strides 8, 16 was the oldest and went
    assert cache.get([8, 16], [(4, 4), (2, 2)], anchors, cpu, torch.float32) is not g2
    assert cache.get([8, 16], [(4, 4), (2, 2)], None, cpu, torch.float32).wh is None


def test_grid_cache_checks_tensors_by_version_not_by_reading_them(monkeypatch):
    """A hit must not read a tensor's values (on a GPU that waits for it); an in-place write still misses."""
    cache, cpu = GridCache(), torch.device("cpu")
    stride, anchors = torch.tensor([8.0, 16.0]), torch.tensor([[[10.0, 13.0]], [[30.0, 61.0]]])
    g = cache.get(stride, [(4, 4), (2, 2)], anchors, cpu, torch.float32)

    def no_read(*_a, **_k):
        raise AssertionError("a cache hit read a tensor's values")

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "tolist", no_read)
        m.setattr(torch, "equal", no_read)
        assert cache.get(stride, [(4, 4), (2, 2)], anchors, cpu, torch.float32) is g
    stride.mul_(0.5)  # strides set in place after a dry run
    g2 = cache.get(stride, [(4, 4), (2, 2)], anchors, cpu, torch.float32)
    assert g2 is not g and g2.stride[0] == 4
    anchors.copy_(anchors * 2)  # load_state_dict's write
    assert cache.get(stride, [(4, 4), (2, 2)], anchors, cpu, torch.float32) is not g2
