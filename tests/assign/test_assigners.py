"""Assigners against slow per-box reference implementations and hand-worked cases."""
import math
from pathlib import Path

import pytest
import torch
import torchvision.ops as tvops

from utils.assign import (
    ASSIGNERS,
    ATSSAssigner,
    CellGrid,
    IoUAssigner,
    TaskAlignedAssigner,
    assigners_for,
    build_assigner,
    make_grid,
)
from utils.assign.tal import uniform_pow
from utils.boxes import pairwise_nwd
from utils.config import default_hyp

HYP = default_hyp()

ANCHORS3 = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


def anchors_tensor(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).view(len(rows), -1, 2)


def random_case(seed: int, img_hw=(96, 128), strides=(8, 16, 32), anchors=None, b=3, g=10):
    gen = torch.Generator().manual_seed(seed)
    if anchors is None:  # random shapes, scaled with the stride like real anchors
        base = torch.rand(len(strides), 3, 2, generator=gen, dtype=torch.float64) * 3 + 0.5
        anchors = base * torch.tensor(strides, dtype=torch.float64).view(-1, 1, 1)
    h, w = img_hw
    shapes = [(math.ceil(h / s), math.ceil(w / s)) for s in strides]
    pts = make_grid(list(strides), shapes, anchors)
    wh = torch.exp(torch.rand(b, g, 2, generator=gen, dtype=torch.float64)
                   * math.log(60)) + 1  # 2..61 px, log-uniform: many tiny boxes
    cxy = torch.rand(b, g, 2, generator=gen, dtype=torch.float64) * torch.tensor(
        [w, h], dtype=torch.float64)
    boxes = torch.cat((cxy - wh / 2, cxy + wh / 2), -1)
    mask = torch.rand(b, g, generator=gen) < 0.8
    boxes = boxes * mask[..., None]  # padding rows are zeros, as the loss makes them
    return anchors, list(strides), shapes, pts, boxes, mask


def _resolve(cands: dict) -> tuple[dict, int]:
    """cands[(b, a)] = list of (quality, g); best quality wins, ties to the lowest g."""
    out = {}
    for key, lst in cands.items():
        best_q = max(q for q, _ in lst)
        out[key] = min(gi for q, gi in lst if q == best_q)
    contested = sum(len({gi for _, gi in lst}) > 1 for lst in cands.values())
    return out, contested


def ref_iou_assign(anchors, strides, shapes, boxes, mask, anchor_t=4.0, mode="ratio",
                   iou_t=0.2):
    """YOLOv5 v6 build_targets, one box at a time (its own neighbour-cell formulas): every
    (image, position, box) pair that learns, sorted, as a list (a box can take one position twice),
    and each position's objectness owner, the pair YOLOv5 writes last (its order is level, then
    candidate cell own / left / up / right / down, then anchor, then box), and how many positions
    more than one box wants."""
    pairs, writers, start = [], {}, []
    n = 0
    for (h, w) in shapes:
        start.append(n)
        n += anchors.shape[1] * h * w
    for b in range(boxes.shape[0]):
        for g in range(boxes.shape[1]):
            if not mask[b, g]:
                continue
            x1, y1, x2, y2 = boxes[b, g].tolist()
            bw, bh = x2 - x1, y2 - y1
            for lvl, ((h, w), s) in enumerate(zip(shapes, strides)):
                gx, gy = (x1 + x2) / 2 / s, (y1 + y2) / 2 / s
                gxi, gyi = w - gx, h - gy
                cells = [(0, gx, gy)]
                if gx % 1 < 0.5 and gx > 1:
                    cells.append((1, gx - 0.5, gy))
                if gy % 1 < 0.5 and gy > 1:
                    cells.append((2, gx, gy - 0.5))
                if gxi % 1 < 0.5 and gxi > 1:
                    cells.append((3, gx + 0.5, gy))
                if gyi % 1 < 0.5 and gyi > 1:
                    cells.append((4, gx, gy + 0.5))
                for a in range(anchors.shape[1]):
                    aw, ah = anchors[lvl, a].tolist()
                    if mode == "ratio":
                        worst = max(bw / aw, aw / bw, bh / ah, ah / bh)
                        if not worst < anchor_t:
                            continue
                    else:
                        inter = min(bw, aw) * min(bh, ah)
                        if not inter / (bw * bh + aw * ah - inter) > iou_t:
                            continue
                    for k, cx, cy in cells:
                        ix = min(max(int(cx), 0), w - 1)
                        iy = min(max(int(cy), 0), h - 1)
                        idx = start[lvl] + (a * h + iy) * w + ix
                        pairs.append((b, idx, g))
                        writers.setdefault((b, idx), []).append((k, g))
    owner = {key: max(lst)[1] for key, lst in writers.items()}
    contested = sum(len({gi for _, gi in lst}) > 1 for lst in writers.values())
    return owner, sorted(pairs), contested


def ref_atss_assign(pts, boxes, mask, topk=9, force=True, use_nwd=False, nwd_c=12.8):
    """ATSS over the flat anchor list: sort every anchor of a level by centre distance."""
    xy, wh, lv, layout = pts.xy, pts.wh, pts.level, pts.layout
    anchor_boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
    na = layout[0].na
    cands = {}
    for b in range(boxes.shape[0]):
        for g in range(boxes.shape[1]):
            if not mask[b, g]:
                continue
            box = boxes[b, g]
            centre = (box[:2] + box[2:]) / 2
            chosen = []
            for lvl in range(int(lv.max()) + 1):
                idx = (lv == lvl).nonzero().flatten()
                d = ((xy[idx] - centre) ** 2).sum(1)
                order = torch.sort(d, stable=True).indices  # na anchors share a centre
                chosen.append(idx[order[:topk * na]])
            chosen = torch.cat(chosen)
            sim_fn = (lambda a, t: pairwise_nwd(a, t, nwd_c)) if use_nwd else tvops.box_iou
            sim = sim_fn(anchor_boxes[chosen], box[None])[:, 0]
            thr = sim.mean() + sim.std()
            c = xy[chosen]
            inside = (c[:, 0] > box[0]) & (c[:, 0] < box[2]) & (c[:, 1] > box[1]) & (c[:, 1] < box[3])
            pos = (sim >= thr) & inside
            if force and not pos.any():
                pos[sim.argmax()] = True
            for k in pos.nonzero().flatten().tolist():
                cands.setdefault((b, int(chosen[k])), []).append((float(sim[k]), g))
    return _resolve(cands)


def run(assigner, grid, boxes, mask):
    """(fg, gt_idx) of one assignment."""
    r = assigner(grid, boxes, mask)
    return r.fg, r.gt_idx


def dense_to_dict(fg, gt_idx) -> dict:
    return {(int(b), int(a)): int(gt_idx[b, a]) for b, a in fg.nonzero().tolist()}


@pytest.mark.parametrize("mode", ["ratio", "iou"])
def test_iou_assigner_matches_reference(mode):
    contested = twice = 0
    for seed in range(6):
        strides = (8, 16, 32) if seed % 2 == 0 else (4, 8, 16, 32)
        anchors, strides, shapes, pts, boxes, mask = random_case(seed, strides=strides)
        if seed >= 3:  # whole-pixel boxes: centres land exactly on cell borders and middles
            boxes = boxes.round()
            boxes[..., 2:] = torch.max(boxes[..., 2:], boxes[..., :2] + 2)
        r = IoUAssigner(4.0, mode, 0.2)(pts, boxes, mask)
        owner, pairs, n = ref_iou_assign(anchors, strides, shapes, boxes, mask, mode=mode)
        assert dense_to_dict(r.fg, r.gt_idx) == owner
        assert sorted(map(tuple, r.pairs.tolist())) == pairs
        contested += n
        twice += len(pairs) - len(set(pairs))
    assert contested > 0  # the conflict rule was exercised
    assert twice > 0  # and a centre on a cell border (own cell twice)


@pytest.mark.parametrize("use_nwd,force", [(False, True), (False, False), (True, True)])
def test_atss_matches_reference(use_nwd, force):
    contested, total = 0, 0
    cases = [dict(), dict(strides=(4, 8, 16, 32)), dict(img_hw=(40, 72)),  # P5 2 x 3
             dict(img_hw=(24, 320)),  # thin grids (P5 1 x 10): top-k reaches far along x
             dict(anchors=anchors_tensor(ANCHORS3))]
    for seed in range(10):
        anchors, strides, shapes, pts, boxes, mask = random_case(seed, **cases[seed % 5])
        fg, gt_idx = run(ATSSAssigner(9, force, use_nwd, HYP["nwd_c"]), pts, boxes, mask)
        ref, n = ref_atss_assign(pts, boxes, mask, 9, force, use_nwd)
        assert dense_to_dict(fg, gt_idx) == ref
        contested += n
        total += len(ref)
    assert contested > 0 and total > 0


def test_layout_recovered_from_flat_arrays():
    anchors = anchors_tensor(ANCHORS3)
    pts = make_grid([8, 16, 32], [(12, 16), (6, 8), (3, 4)], anchors)
    got = CellGrid.from_flat(pts.xy, pts.wh, pts.stride, pts.level).layout
    for a, b in zip(got, pts.layout):
        assert (a.start, a.na, a.h, a.w, a.stride) == (b.start, b.na, b.h, b.w, b.stride)
        assert torch.equal(a.anchor_wh, b.anchor_wh)
    assert [a.start for a in got] == [0, 3 * 12 * 16, 3 * 12 * 16 + 3 * 6 * 8]
    # order: level, anchor, y, x -- x fastest
    xy = pts.xy
    assert xy[1].tolist() == [12.0, 4.0] and xy[16].tolist() == [4.0, 12.0]


def one_level(anchor_wh, hw=(4, 4), stride=8.0):
    anchors = torch.tensor([[anchor_wh]], dtype=torch.float64)
    return make_grid([stride], [hw], anchors)


def test_iou_assigner_hand_cases():
    pts = one_level([10.0, 10.0])
    box = lambda cx, cy, w, h: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]  # noqa: E731
    a = IoUAssigner.from_hyp(HYP)
    # centre (13, 20) -> grid (1.625, 2.5): own cell (1, 2), right neighbour (frac .625 > .5);
    # y frac exactly .5 is near neither border
    fg, gi = run(a, pts, torch.tensor([[box(13, 20, 10, 10)]], dtype=torch.float64),
               torch.ones(1, 1, dtype=torch.bool))
    assert fg[0].nonzero().flatten().tolist() == [2 * 4 + 1, 2 * 4 + 2]
    # grid (2.25, 1.25): own (2, 1), left (1, 1), up (2, 0)
    fg, _ = run(a, pts, torch.tensor([[box(18, 10, 12, 8)]], dtype=torch.float64),
              torch.ones(1, 1, dtype=torch.bool))
    assert sorted(fg[0].nonzero().flatten().tolist()) == [2, 1 * 4 + 1, 1 * 4 + 2]
    # 50 x 10 vs 10 x 10 anchor: ratio 5 >= 4, no match
    fg, _ = run(a, pts, torch.tensor([[box(18, 10, 50, 10)]], dtype=torch.float64),
              torch.ones(1, 1, dtype=torch.bool))
    assert not fg.any()
    # two boxes in the same cell (grid (1.5, 1.5): no neighbours): as in YOLOv5 both learn it, whichever
    # fits better (ratio 1.2 beats 2.0), and its objectness target is the later box's (YOLOv5's last write)
    for order in ((20, 12), (12, 20)):
        r = a(pts, torch.tensor([[box(12, 12, w, 10) for w in order]], dtype=torch.float64),
              torch.ones(1, 2, dtype=torch.bool))
        assert r.pairs.tolist() == [[0, 5, 0], [0, 5, 1]] and r.gt_idx[0, 5].item() == 1 and r.fg[0].sum() == 1
    # a centre exactly on a cell's left and top border (grid (2.0, 1.0)): the own cell twice (YOLOv5's right
    # and down tests pass there and truncate back onto it), the left neighbour, no upper one (gy > 1 fails)
    r = a(pts, torch.tensor([[box(16, 8, 10, 10)]], dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool))
    assert sorted(r.pairs[:, 1].tolist()) == [1 * 4 + 1, 1 * 4 + 2, 1 * 4 + 2, 1 * 4 + 2]


def test_atss_hand_cases():
    pts = one_level([8.0, 8.0], hw=(5, 5))
    # 16 x 16 box on cell (2, 2)'s centre: IoUs 0.25 (own), 32/288 (4 sides), 16/304 (corners);
    # threshold mean + std = 0.1637, so only the own cell (index 12) is positive
    box = torch.tensor([[[12.0, 12.0, 28.0, 28.0]]], dtype=torch.float64)
    ious = torch.tensor([0.25] + [32 / 288] * 4 + [16 / 304] * 4, dtype=torch.float64)
    assert 32 / 288 < ious.mean() + ious.std() < 0.25
    fg, _ = run(ATSSAssigner(9), pts, box, torch.ones(1, 1, dtype=torch.bool))
    assert fg[0].nonzero().flatten().tolist() == [12]
    # 3 x 3 box holds no cell centre: no positive unless forced, then its best IoU cell
    tiny = torch.tensor([[[21.0, 21.0, 24.0, 24.0]]], dtype=torch.float64)
    fg, _ = run(ATSSAssigner(9, force_positive=False), pts, tiny, torch.ones(1, 1, dtype=torch.bool))
    assert not fg.any()
    fg, _ = run(ATSSAssigner(9, force_positive=True), pts, tiny, torch.ones(1, 1, dtype=torch.bool))
    assert fg[0].nonzero().flatten().tolist() == [12]


@pytest.mark.parametrize("name", ["iou", "atss"])
def test_no_boxes_and_padding(name):
    anchors = anchors_tensor(ANCHORS3)
    pts = make_grid([8, 16, 32], [(8, 8), (4, 4), (2, 2)], anchors)
    a = build_assigner(name, HYP)
    fg, gi = run(a, pts, torch.zeros(2, 0, 4, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.bool))
    assert fg.shape == (2, pts.xy.shape[0]) and not fg.any() and gi.dtype == torch.long
    # masked-out rows never assign, even when they hold a real-looking box
    boxes = torch.tensor([[[10.0, 10.0, 30.0, 40.0]]], dtype=torch.float64)
    fg, _ = run(a, pts, boxes, torch.zeros(1, 1, dtype=torch.bool))
    assert not fg.any()


def test_registry_and_hyp():
    assert {"iou", "atss"} <= set(ASSIGNERS)
    a = build_assigner("iou", {"anchor_t": 3.0, "iou_mode": "iou", "iou_t": 0.3})
    assert (a.anchor_t, a.mode, a.iou_t) == (3.0, "iou", 0.3)
    a = build_assigner("atss", {"atss_topk": 4, "atss_force_positive": False, "atss_nwd": True,
                                "nwd_c": 6.0})
    assert (a.topk, a.force_positive, a.use_nwd, a.nwd_c) == (4, False, True, 6.0)
    with pytest.raises(ValueError, match="unknown assigner 'simota'"):
        build_assigner("simota", {})
    with pytest.raises(ValueError, match="mode"):
        IoUAssigner(4.0, "shape", 0.2)


def tie_case(seed: int, name: str, dtype: torch.dtype):
    """random_case with whole-pixel boxes and exact duplicates (boxes tied with each other), plus, for
    tal, classes and predictions that tie too: cells sharing one predicted box and score, and cells
    whose prediction overlaps nothing (metric 0). Returns the grid of the assigner's head ('atss-free':
    atss on the anchor-free grid)."""
    anchors, strides, shapes, _, boxes, mask = random_case(seed, b=3, g=12)
    boxes = boxes.round()
    boxes[..., 2:] = torch.max(boxes[..., 2:], boxes[..., :2] + 2)
    boxes[:, 6:9], mask[:, 6:9] = boxes[:, 2:3], mask[:, 2:3]  # three copies of box 2 in each image
    gen = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, 3, (3, 12), generator=gen)
    cls[:, 6:9] = cls[:, 2:3]
    points = make_grid(strides, shapes, dtype=torch.float64)
    a = points.num
    scores = torch.rand(3, a, 3, generator=gen, dtype=torch.float64)
    scores[:, ::3] = 0.5
    pwh = torch.rand(3, a, 2, generator=gen, dtype=torch.float64) * 30 + 2
    pxy = points.xy + torch.randn(3, a, 2, generator=gen, dtype=torch.float64) * 3
    pred = torch.cat((pxy - pwh / 2, pxy + pwh / 2), -1)
    pred[:, ::3] = torch.tensor([40.0, 30.0, 70.0, 60.0], dtype=torch.float64)
    pred[:, 1::7] = -100.0
    grid = make_grid(strides, shapes, None if name in ("tal", "atss-free") else anchors.to(dtype), dtype=dtype)
    return grid, boxes.to(dtype), mask, cls, scores.to(dtype), pred.to(dtype)


def _assign(assigner, grid, boxes, mask, cls, scores, pred, chunk_bytes):
    assigner.chunk_bytes = chunk_bytes
    if assigner.needs_predictions or grid.wh is None:  # DFLLoss passes them to every anchor-free assigner
        return assigner(grid, boxes, mask, gt_cls=cls, pred_scores=scores, pred_boxes=pred)
    return assigner(grid, boxes, mask, gt_cls=cls)


@pytest.mark.parametrize("name", ["iou", "atss", "atss-free", "tal", "tal-stal"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunked_equals_dense_including_ties(name, dtype):
    """Boxes one, two or five at a time give exactly what all boxes at once (the dense computation)
    give: positives, boxes and the soft targets (tal, anchor-free atss), bit for bit, ties included."""
    hyp = {**HYP, "atss_nwd": dtype == torch.float32, "tal_stal": name == "tal-stal"}  # atss: IoU and NWD
    a = build_assigner(name.split("-")[0], hyp)
    name = "tal" if name == "tal-stal" else name
    tied = 0
    for seed in range(4):
        grid, boxes, mask, cls, scores, pred = tie_case(seed, name, dtype)
        dense = _assign(a, grid, boxes, mask, cls, scores, pred, 2 ** 62)
        assert dense.fg.any()
        per_box = a.bytes_per_box(grid, boxes.shape[0], boxes.element_size())
        for boxes_per_chunk in (1, 2, 5):
            got = _assign(a, grid, boxes, mask, cls, scores, pred, boxes_per_chunk * per_box)
            for field in ("fg", "gt_idx", "boxes", "scores", "pairs"):
                want, have = getattr(dense, field), getattr(got, field)
                assert (want is None and have is None) or torch.equal(want, have), (seed, boxes_per_chunk, field)
        # the copies of box 2 tie with it everywhere: every position they want goes to box 2, or with
        # YOLOv5's rule (iou) to its last writer, the last copy (box 8), while all four learn there
        won, lost = (8, (2, 6, 7)) if name == "iou" else (2, (6, 7, 8))
        assert not (dense.fg & torch.isin(dense.gt_idx, torch.tensor(lost))).any()
        tied += int((dense.fg & (dense.gt_idx == won)).sum())
        if name == "iou":
            learns = {g: {(b, a) for b, a, gg in dense.pairs.tolist() if gg == g} for g in (2, 6, 7, 8)}
            assert learns[2] and all(learns[g] == learns[2] for g in (6, 7, 8))
    assert tied > 0


def test_chunks_follow_the_byte_budget():
    grid, boxes, mask, *_ = tie_case(0, "atss", torch.float64)
    a = build_assigner("atss", HYP)
    a.chunk_bytes = 5 * a.bytes_per_box(grid, boxes.shape[0], boxes.element_size())
    sizes, claims = [], a.claims
    a.claims = lambda grid, gt_boxes, *rest: sizes.append(gt_boxes.shape[1]) or claims(grid, gt_boxes, *rest)
    a(grid, boxes, mask)
    assert sizes == [5, 5, 2]


def test_registry_fits_heads_and_names_the_choices():
    assert {"iou", "atss", "tal"} <= set(ASSIGNERS)
    assert assigners_for("anchor") == ["atss", "iou"] and assigners_for("anchor-free") == ["atss", "tal"]
    assert isinstance(build_assigner("tal", HYP, "anchor-free"), TaskAlignedAssigner)
    assert isinstance(build_assigner("atss", HYP, "anchor-free"), ATSSAssigner)
    with pytest.raises(ValueError, match=r"'tal' needs .* anchor-based Detect head .*\['atss', 'iou'\]"):
        build_assigner("tal", HYP, "anchor")
    with pytest.raises(ValueError, match=r"'iou' needs anchor shapes.*DetectDFL.*\['atss', 'tal'\]"):
        build_assigner("iou", HYP, "anchor-free")
    with pytest.raises(ValueError, match=r"unknown assigner 'simota'; choose from \['atss', 'iou', 'tal'\]"):
        build_assigner("simota", HYP)
    # values come from the hyp, whose defaults live in configs/hyps/default.yaml only
    for name, key in (("iou", "anchor_t"), ("atss", "atss_topk"), ("tal", "tal_topk")):
        with pytest.raises(KeyError, match=key):
            build_assigner(name, {})
    assert build_assigner("tal", {"tal_topk": 3, "tal_alpha": 1.0}).alpha == 1.0
    grid = make_grid([8], [(2, 2)])
    with pytest.raises(ValueError, match="pred_scores"):
        TaskAlignedAssigner(10)(grid, torch.zeros(1, 1, 4), torch.ones(1, 1, dtype=torch.bool))


def test_uniform_pow_does_not_depend_on_the_call():
    """CPU pow(x, 6) can differ in the last bit between a call's SIMD body and its tail; tal's chunks
    must not see that, so each element's value is the same whatever else shares its call."""
    x = torch.rand(1000, dtype=torch.float32)
    whole = uniform_pow(x, 6.0)
    assert torch.equal(whole, torch.cat([uniform_pow(x[i:i + 1], 6.0) for i in range(1000)]))
    for i, n in ((0, 31), (5, 33), (100, 64), (900, 100)):
        assert torch.equal(uniform_pow(x[i:i + n], 6.0), whole[i:i + n])


def test_anchor_configs_default_to_atss_and_the_dfl_configs_to_tal():
    """The default each head trains with (docs/models.md, "Which assigner"): every shipped YAML names it, and a YAML
    that names none gets the registry's (the model keeps none: the loss and the checkpoint fill it in)."""
    from models.config import load_model_config
    from models.yolo import Model
    from utils.assign import DEFAULT_FOR_HEAD
    from utils.checkpoints.checkpoint import checkpoint_yaml
    from utils.loss.common import pick_assigner

    assert DEFAULT_FOR_HEAD == {"anchor": "atss", "anchor-free": "tal"}
    for f in sorted((Path(__file__).resolve().parents[2] / "configs" / "models").glob("*.yaml")):
        cfg = load_model_config(f)
        head = "anchor-free" if cfg["head"][-1][2] == "DetectDFL" else "anchor"
        assert cfg["assigner"] == DEFAULT_FOR_HEAD[head], f
    cfg = load_model_config("yolov5n.yaml")
    del cfg["assigner"]
    m = Model(cfg)
    assert "assigner" not in m.yaml
    assert pick_assigner(m, default_hyp(), None, "anchor").name == checkpoint_yaml(m)["assigner"] == "atss"
