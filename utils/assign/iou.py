"""IoUAssigner: YOLOv5's shape matching, in the box's cell and its nearest neighbours."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from utils.assign.base import Assigner
from utils.assign.claims import Claims
from utils.grid import CellGrid
from utils.assign.registry import register_assigner
from utils.assign.result import Assignment
from utils.boxes import wh_iou


@register_assigner("iou")
class IoUAssigner(Assigner):
    """YOLOv5 matching: a box goes to every anchor shape that fits it, in the cell holding
    its centre and in the (up to two) neighbouring cells whose shared border the centre is
    within half a cell of (YOLOv5 v6, g = 0.5), so each box gets up to 3 positions per shape.

    mode 'ratio': fits when max(w/aw, aw/w, h/ah, ah/h) < anchor_t (YOLOv5);
    mode 'iou':   fits when the centre-aligned IoU of box and anchor shape > iou_t (YOLOv3).
    As in YOLOv5, every (box, position) pair learns: two boxes that want one position both
    train its box and class outputs, and a centre exactly on a cell's left (top) border takes its
    own cell twice (YOLOv5's right (down) neighbour test passes there and lands on the own cell).
    The position's objectness target is the match quality of the pair YOLOv5 writes last: the
    later candidate cell in the order own, left, up, right, down, then the later box.
    Works on those few candidate positions per box only, never on B x G x A.
    """

    heads = frozenset({"anchor"})
    needs = "anchor shapes to match boxes against"
    optional_hyp = {"iou_mode": "ratio"}
    # candidate cells, as offsets (grid units) taken from the centre before truncating to a cell:
    # own cell, then neighbours left, up, right, down (x, y)
    _OFFSETS = ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (-0.5, 0.0), (0.0, -0.5))

    def __init__(self, anchor_t: float, mode: str, iou_t: float):
        if mode not in ("ratio", "iou"):
            raise ValueError(f"iou assigner: mode must be 'ratio' or 'iou', got {mode!r}")
        self.anchor_t, self.mode, self.iou_t = float(anchor_t), mode, float(iou_t)

    @classmethod
    def from_hyp(cls, hyp: Mapping[str, Any]) -> IoUAssigner:
        return cls(hyp["anchor_t"], cls.hyp_value(hyp, "iou_mode"), hyp["iou_t"])

    def bytes_per_box(self, grid: CellGrid, batch: int, itemsize: int) -> int:
        return batch * sum(lv.na * len(self._OFFSETS) for lv in grid.layout) * (32 + 4 * itemsize)

    def claims(self, grid: CellGrid, gt_boxes: torch.Tensor, gt_mask: torch.Tensor,
               gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None, g0: int) -> Claims:
        b, g = gt_mask.shape
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        wh = gt_boxes[..., 2:] - gt_boxes[..., :2]
        offsets = torch.tensor(self._OFFSETS, device=gt_boxes.device, dtype=gt_boxes.dtype)
        nb = len(self._OFFSETS)
        which = torch.arange(nb, device=gt_boxes.device)
        idx_l, q_l, v_l, o_l = [], [], [], []
        for lv in grid.layout:
            awh = lv.anchor_wh.to(gt_boxes.dtype)  # (na, 2)
            if self.mode == "ratio":
                r = wh[:, :, None, :] / awh
                worst = torch.max(r, 1 / r).amax(-1)  # (B, G, na)
                fits, quality = worst < self.anchor_t, 1 / worst
            else:
                quality = wh_iou(wh[:, :, None, :], awh)
                fits = quality > self.iou_t
            dims = lv.dims(gt_boxes)
            gxy = centre / lv.stride  # grid units
            gxi = dims - gxy  # from the far side
            # YOLOv5 v6's tests, in its arithmetic (so that exact borders and middles go its way)
            near = torch.cat((torch.ones_like(gxy[..., :1], dtype=torch.bool),
                              (gxy % 1 < 0.5) & (gxy > 1), (gxi % 1 < 0.5) & (gxi > 1)), -1)
            cells = (gxy[:, :, None, :] - offsets).long()  # (B, G, 5, 2), truncated as YOLOv5 does
            cells = torch.minimum(cells.clamp(min=0), dims.long() - 1)
            pos = cells[..., 1] * lv.w + cells[..., 0]  # (B, G, 5)
            a = torch.arange(lv.na, device=gt_boxes.device).view(1, 1, lv.na, 1)
            idx_l.append((lv.start + a * (lv.h * lv.w) + pos[:, :, None, :]).reshape(b, g, -1))
            q_l.append(quality[..., None].expand(b, g, lv.na, nb).reshape(b, g, -1))
            v_l.append((fits[..., None] & near[:, :, None, :] & gt_mask[:, :, None, None]).reshape(b, g, -1))
            o_l.append(which.expand(b, g, lv.na, nb).reshape(b, g, -1))
        return Claims.from_mask(torch.cat(v_l, -1), torch.cat(idx_l, -1), torch.cat(q_l, -1), g0,
                                extra=torch.cat(o_l, -1))

    def finish(self, claims: Claims, won: torch.Tensor, fg: torch.Tensor, gt_idx: torch.Tensor,
               gt_boxes: torch.Tensor, gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None) -> Assignment:
        """Every claim learns (``pairs``); fg / gt_idx name YOLOv5's last writer of each position: the
        latest candidate cell (offset order), then the latest box (a key exact in fp32 below 2^24)."""
        batch, num_boxes = gt_boxes.shape[:2]
        key = (claims.extra * num_boxes + claims.g).to(torch.float32)
        fg, gt_idx, _ = Claims(claims.b, claims.g, claims.a, key).resolve(batch, num_boxes, fg.shape[1])
        # sorted by image, position, box: the same list (and the loss the same sums) however the boxes were chunked
        order = ((claims.b * fg.shape[1] + claims.a) * num_boxes + claims.g).argsort()
        pairs = torch.stack((claims.b, claims.a, claims.g), 1)[order]
        return Assignment(fg, gt_idx, gt_boxes, pairs=pairs)
