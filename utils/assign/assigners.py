"""Label assignment: which anchor positions learn which ground-truth box.

Every assigner has one call (docs/interfaces.md):

    assigner(anchor_xy (A,2), anchor_wh (A,2), anchor_stride (A,), anchor_level (A,),
             gt_boxes (B,G,4) xyxy, gt_mask (B,G) bool) -> fg (B,A) bool, gt_idx (B,A) long

A enumerates level, anchor, y, x (the eval-mode order); anchor_xy are cell centres
((x + 0.5) * stride) in input pixels. The dense (B, A) answer means a position learns at
most one box; where several boxes want the same position the best match wins.

Both assigners work on a handful of candidate positions per box (found arithmetically
from the box centre), so cost grows with the number of boxes, not with B * G * A.
Pick one by name with ``build_assigner`` (a registry, so new assigners need no edits here).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from utils.boxes import NWD_C, aligned_iou, nwd, wh_iou

ASSIGNERS: dict[str, type] = {}


def register_assigner(name: str) -> Callable[[type], type]:
    """Class decorator: make an assigner available to ``build_assigner`` under ``name``."""

    def wrap(cls: type) -> type:
        if name in ASSIGNERS and ASSIGNERS[name] is not cls:
            raise KeyError(f"assigner {name!r} registered twice")
        ASSIGNERS[name] = cls
        return cls

    return wrap


def build_assigner(name: str, hyp: dict | None = None):
    """Assigner named ``name`` ('iou', 'atss', ...) configured from the hyp dict."""
    try:
        cls = ASSIGNERS[name]
    except KeyError:
        raise ValueError(f"unknown assigner {name!r}; choose from {sorted(ASSIGNERS)}") from None
    return cls.from_hyp(hyp or {})


@dataclass(frozen=True)
class LevelLayout:
    """Where one level sits in the flat anchor list: A-index = start + (a*h + y)*w + x."""

    start: int
    na: int
    h: int
    w: int
    stride: float
    anchor_wh: torch.Tensor  # (na, 2) pixels


def make_anchor_points(anchors: torch.Tensor, strides: list[float], shapes: list[tuple[int, int]]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                  list[LevelLayout]]:
    """Flat anchor arrays for grids ``shapes`` [(h, w)] per level and their layout.

    ``anchors`` (nl, na, 2) pixels. Returns anchor_xy, anchor_wh, anchor_stride,
    anchor_level (all on the anchors' device/dtype; level is long) and the layout list.
    """
    nl, na, _ = anchors.shape
    if len(strides) != nl or len(shapes) != nl:
        raise ValueError(f"{nl} anchor levels but {len(strides)} strides, {len(shapes)} grids")
    dev, dt = anchors.device, anchors.dtype
    xy, wh, st, lv, layout, start = [], [], [], [], [], 0
    for i, ((h, w), s) in enumerate(zip(shapes, strides)):
        y, x = torch.meshgrid(torch.arange(h, device=dev, dtype=dt),
                              torch.arange(w, device=dev, dtype=dt), indexing="ij")
        centres = (torch.stack((x, y), -1) + 0.5) * s  # (h, w, 2)
        n = na * h * w
        xy.append(centres.expand(na, h, w, 2).reshape(n, 2))
        wh.append(anchors[i].view(na, 1, 1, 2).expand(na, h, w, 2).reshape(n, 2))
        st.append(torch.full((n,), float(s), device=dev, dtype=dt))
        lv.append(torch.full((n,), i, device=dev, dtype=torch.long))
        layout.append(LevelLayout(start, na, h, w, float(s), anchors[i]))
        start += n
    return torch.cat(xy), torch.cat(wh), torch.cat(st), torch.cat(lv), layout


def anchor_layout(anchor_xy: torch.Tensor, anchor_wh: torch.Tensor, anchor_stride: torch.Tensor,
                  anchor_level: torch.Tensor) -> list[LevelLayout]:
    """Recover the per-level grid layout from the flat arrays (one small host sync)."""
    counts = torch.bincount(anchor_level).tolist()
    starts = [sum(counts[:i]) for i in range(len(counts))]
    stats = []
    for s0, n in zip(starts, counts):
        sl = slice(s0, s0 + n)
        stats.append(torch.stack((anchor_stride[s0], anchor_xy[sl, 0].max(), anchor_xy[sl, 1].max())))
    layout = []
    for i, ((s, xmax, ymax), s0, n) in enumerate(zip(torch.stack(stats).tolist(), starts, counts)):
        w, h = round(xmax / s + 0.5), round(ymax / s + 0.5)
        na = n // max(h * w, 1)
        if na * h * w != n or n == 0:
            raise ValueError(f"level {i}: {n} anchors do not form an (na, {h}, {w}) grid; "
                             "anchors must run level, anchor, y, x")
        layout.append(LevelLayout(s0, na, h, w, s, anchor_wh[s0:s0 + n:h * w]))
    return layout


def _empty(gt_mask: torch.Tensor, num_anchors: int) -> tuple[torch.Tensor, torch.Tensor]:
    b = gt_mask.shape[0]
    return (torch.zeros(b, num_anchors, dtype=torch.bool, device=gt_mask.device),
            torch.zeros(b, num_anchors, dtype=torch.long, device=gt_mask.device))


def resolve_conflicts(idx: torch.Tensor, quality: torch.Tensor, valid: torch.Tensor,
                      num_anchors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter candidate pairs (B, G, C) into the dense (B, A) answer.

    ``idx`` flat anchor index, ``quality`` higher = better match, ``valid`` candidate kept.
    A position wanted by several boxes goes to the highest quality; exact ties go to the
    lowest box index (deterministic).
    """
    b, g, c = idx.shape
    if g * c == 0:
        return _empty(valid, num_anchors)
    neg_inf = torch.tensor(float("-inf"), device=quality.device, dtype=quality.dtype)
    q = torch.where(valid, quality, neg_inf).reshape(b, -1)
    flat = torch.where(valid, idx, torch.zeros_like(idx)).reshape(b, -1)
    best = torch.full((b, num_anchors), float("-inf"), device=q.device, dtype=q.dtype)
    best = best.scatter_reduce(1, flat, q, reduce="amax")
    winner = valid.reshape(b, -1) & (q == best.gather(1, flat))
    gt_of = torch.arange(g, device=idx.device).view(1, g, 1).expand(b, g, c).reshape(b, -1)
    gt_of = torch.where(winner, gt_of, torch.full_like(gt_of, g))
    gt_idx = torch.full((b, num_anchors), g, device=idx.device, dtype=torch.long)
    gt_idx = gt_idx.scatter_reduce(1, flat, gt_of, reduce="amin")
    fg = gt_idx < g
    return fg, gt_idx.masked_fill(~fg, 0)


def _grid_dims(lv: LevelLayout, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([lv.w, lv.h], device=like.device, dtype=like.dtype)


@register_assigner("iou")
class IoUAssigner:
    """YOLOv5 matching: a box goes to every anchor shape that fits it, in the cell holding
    its centre and in the (up to two) neighbouring cells whose shared border the centre is
    within half a cell of (YOLOv5 v6, g = 0.5), so each box gets up to 3 positions per shape.

    mode 'ratio': fits when max(w/aw, aw/w, h/ah, ah/h) < anchor_t (YOLOv5);
    mode 'iou':   fits when the centre-aligned IoU of box and anchor shape > iou_t (YOLOv3).
    Unlike YOLOv5, a position learns one box only: the best fit (lowest ratio / highest IoU).
    """

    # own cell, then neighbours left, up, right, down (x, y)
    _OFFSETS = ((0, 0), (-1, 0), (0, -1), (1, 0), (0, 1))

    def __init__(self, anchor_t: float = 4.0, mode: str = "ratio", iou_t: float = 0.2):
        if mode not in ("ratio", "iou"):
            raise ValueError(f"iou assigner: mode must be 'ratio' or 'iou', got {mode!r}")
        self.anchor_t, self.mode, self.iou_t = float(anchor_t), mode, float(iou_t)

    @classmethod
    def from_hyp(cls, hyp: dict) -> IoUAssigner:
        return cls(hyp.get("anchor_t", 4.0), hyp.get("iou_mode", "ratio"), hyp.get("iou_t", 0.2))

    def __call__(self, anchor_xy: torch.Tensor, anchor_wh: torch.Tensor,
                 anchor_stride: torch.Tensor, anchor_level: torch.Tensor,
                 gt_boxes: torch.Tensor, gt_mask: torch.Tensor,
                 layout: list[LevelLayout] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        num_anchors = anchor_xy.shape[0]
        b, g = gt_mask.shape
        if g == 0:
            return _empty(gt_mask, num_anchors)
        layout = layout or anchor_layout(anchor_xy, anchor_wh, anchor_stride, anchor_level)
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        wh = gt_boxes[..., 2:] - gt_boxes[..., :2]
        offsets = torch.tensor(self._OFFSETS, device=gt_boxes.device, dtype=gt_boxes.dtype)
        idx_l, q_l, v_l = [], [], []
        for lv in layout:
            awh = lv.anchor_wh.to(gt_boxes.dtype)  # (na, 2)
            if self.mode == "ratio":
                r = wh[:, :, None, :] / awh
                worst = torch.max(r, 1 / r).amax(-1)  # (B, G, na)
                fits, quality = worst < self.anchor_t, 1 / worst
            else:
                quality = wh_iou(wh[:, :, None, :], awh)
                fits = quality > self.iou_t
            dims = _grid_dims(lv, gt_boxes)
            gxy = centre / lv.stride  # grid units
            cell = gxy.floor().clamp(min=torch.zeros_like(dims), max=dims - 1)
            frac = gxy - gxy.floor()
            cells = cell[:, :, None, :] + offsets  # (B, G, 5, 2)
            # YOLOv5 v6's tests (gxy % 1 < 0.5 & gxy > 1, and the mirror image from the far
            # side); a centre exactly on a cell border (frac 0) gets only the lower neighbour
            near = torch.cat((torch.ones_like(frac[..., :1], dtype=torch.bool),
                              (frac < 0.5) & (gxy > 1), (frac > 0.5) & (gxy < dims - 1)), -1)
            use = near & ((cells >= 0) & (cells < dims)).all(-1)
            pos = cells[..., 1] * lv.w + cells[..., 0]  # (B, G, 5)
            a = torch.arange(lv.na, device=gt_boxes.device).view(1, 1, lv.na, 1)
            idx_l.append((lv.start + a * (lv.h * lv.w) + pos[:, :, None, :].long()).reshape(b, g, -1))
            q_l.append(quality[..., None].expand(b, g, lv.na, 5).reshape(b, g, -1))
            v_l.append((fits[..., None] & use[:, :, None, :] & gt_mask[:, :, None, None])
                       .reshape(b, g, -1))
        return resolve_conflicts(torch.cat(idx_l, -1), torch.cat(q_l, -1), torch.cat(v_l, -1),
                                 num_anchors)


def _window_radius(topk: int) -> tuple[int, int]:
    """Half-width R of a cell window that surely holds a box's top-k nearest cell centres.

    On a grid at least q = ceil(sqrt(k)) cells each way, some q x q block of cells within
    q-1 cells of the box's own cell exists even at a corner; its centres are at most
    sqrt(2) * (q - 0.5) cells from the box centre, while any cell more than R away is at
    least R + 0.5 away. So R + 0.5 >= sqrt(2) * (q - 0.5) suffices.
    """
    q = math.ceil(math.sqrt(topk))
    return q, math.ceil(math.sqrt(2) * (q - 0.5) - 0.5)


@register_assigner("atss")
class ATSSAssigner:
    """Adaptive Training Sample Selection (Zhang et al. 2020) on YOLO anchors.

    Per box and level take the ``topk`` cells nearest the box centre, with every anchor
    shape there, as candidates (so topk * na per level: cells tie in distance across shapes,
    so choosing cells rather than anchors keeps the choice well defined). Threshold =
    mean + std (unbiased) of the candidates' IoU over all levels; positives have
    IoU >= threshold and their cell centre strictly inside the box. ``force_positive``
    gives a box with no positive its best candidate (tiny boxes often contain no cell
    centre). ``use_nwd`` scores with NWD (constant ``nwd_c`` px) instead of IoU. A position
    claimed by several boxes goes to the highest score.
    """

    def __init__(self, topk: int = 9, force_positive: bool = True, use_nwd: bool = False,
                 nwd_c: float = NWD_C):
        if topk < 1:
            raise ValueError(f"atss assigner: topk must be >= 1, got {topk}")
        self.topk, self.force_positive = int(topk), bool(force_positive)
        self.use_nwd, self.nwd_c = bool(use_nwd), float(nwd_c)
        self._q, radius = _window_radius(self.topk)
        r = torch.arange(-radius, radius + 1)
        wy, wx = torch.meshgrid(r, r, indexing="ij")
        self._window = torch.stack((wx, wy), -1).view(-1, 2)  # (P, 2) x, y offsets

    @classmethod
    def from_hyp(cls, hyp: dict) -> ATSSAssigner:
        return cls(hyp.get("atss_topk", 9), hyp.get("atss_force_positive", True),
                   hyp.get("atss_nwd", False), hyp.get("nwd_c", NWD_C))

    def _cells(self, lv: LevelLayout, centre: torch.Tensor) -> torch.Tensor:
        """Cells (B, G, P, 2) that may be among each box's nearest; may fall off the grid."""
        dims = _grid_dims(lv, centre)
        if min(lv.h, lv.w) < self._q:
            # grid too thin for the window argument: every cell is a candidate (small grid)
            y, x = torch.meshgrid(torch.arange(lv.h, device=centre.device),
                                  torch.arange(lv.w, device=centre.device), indexing="ij")
            allc = torch.stack((x, y), -1).view(1, 1, -1, 2).to(centre.dtype)
            return allc.expand(*centre.shape[:2], -1, 2)
        cell = (centre / lv.stride).floor().clamp(min=torch.zeros_like(dims), max=dims - 1)
        return cell[:, :, None, :] + self._window.to(centre.device, centre.dtype)

    def __call__(self, anchor_xy: torch.Tensor, anchor_wh: torch.Tensor,
                 anchor_stride: torch.Tensor, anchor_level: torch.Tensor,
                 gt_boxes: torch.Tensor, gt_mask: torch.Tensor,
                 layout: list[LevelLayout] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        num_anchors = anchor_xy.shape[0]
        b, g = gt_mask.shape
        if g == 0:
            return _empty(gt_mask, num_anchors)
        layout = layout or anchor_layout(anchor_xy, anchor_wh, anchor_stride, anchor_level)
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        gt = gt_boxes[:, :, None, None, :]  # (B, G, 1, 1, 4) against (B, G, k, na, 4)
        idx_l, sim_l, ok_l, inside_l = [], [], [], []
        for lv in layout:
            cells = self._cells(lv, centre)
            on_grid = ((cells >= 0) & (cells < _grid_dims(lv, centre))).all(-1)
            cxy = (cells + 0.5) * lv.stride
            d2 = ((cxy - centre[:, :, None, :]) ** 2).sum(-1).masked_fill(~on_grid, float("inf"))
            k = min(self.topk, d2.shape[-1])
            # cells equidistant at the k-th place are picked by topk, i.e. arbitrarily
            d_top, j = d2.topk(k, dim=-1, largest=False)  # (B, G, k)
            cxy = cxy.gather(2, j[..., None].expand(b, g, k, 2))
            cells = cells.gather(2, j[..., None].expand(b, g, k, 2))
            awh = lv.anchor_wh.to(gt_boxes.dtype).view(1, 1, 1, lv.na, 2)
            boxes = torch.cat((cxy[:, :, :, None, :] - awh / 2, cxy[:, :, :, None, :] + awh / 2), -1)
            sim = nwd(boxes, gt, self.nwd_c) if self.use_nwd else aligned_iou(boxes, gt, "iou")
            inside = ((cxy > gt_boxes[:, :, None, :2]) & (cxy < gt_boxes[:, :, None, 2:])).all(-1)
            pos = (cells[..., 1] * lv.w + cells[..., 0]).long()
            a = torch.arange(lv.na, device=gt_boxes.device).view(1, 1, 1, lv.na)
            idx_l.append((lv.start + a * (lv.h * lv.w) + pos[..., None]).reshape(b, g, -1))
            sim_l.append(sim.reshape(b, g, -1))
            ok_l.append(torch.isfinite(d_top)[..., None].expand(b, g, k, lv.na).reshape(b, g, -1))
            inside_l.append(inside[..., None].expand(b, g, k, lv.na).reshape(b, g, -1))
        idx, sim = torch.cat(idx_l, -1), torch.cat(sim_l, -1)
        ok = torch.cat(ok_l, -1) & gt_mask[..., None]
        inside = torch.cat(inside_l, -1)

        okf = ok.to(sim.dtype)
        n = okf.sum(-1, keepdim=True)
        mean = (sim * okf).sum(-1, keepdim=True) / n.clamp(min=1)
        var = (((sim - mean) ** 2) * okf).sum(-1, keepdim=True) / (n - 1).clamp(min=1)
        pos = ok & inside & (sim >= mean + var.sqrt())
        if self.force_positive:
            lonely = ok.any(-1) & ~pos.any(-1)  # (B, G)
            best = sim.masked_fill(~ok, float("-inf")).argmax(-1, keepdim=True)
            forced = torch.zeros_like(pos).scatter_(-1, best, True) & lonely[..., None]
            pos = pos | forced
        return resolve_conflicts(idx, sim, pos, num_anchors)
