"""IoUAssigner: YOLOv5's shape matching, in the box's cell and its nearest neighbours."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from utils.assign.base import Assigner
from utils.assign.claims import Claims
from utils.grid import CellGrid
from utils.assign.registry import register_assigner
from utils.boxes import wh_iou


@register_assigner("iou")
class IoUAssigner(Assigner):
    """YOLOv5 matching: a box goes to every anchor shape that fits it, in the cell holding
    its centre and in the (up to two) neighbouring cells whose shared border the centre is
    within half a cell of (YOLOv5 v6, g = 0.5), so each box gets up to 3 positions per shape.

    mode 'ratio': fits when max(w/aw, aw/w, h/ah, ah/h) < anchor_t (YOLOv5);
    mode 'iou':   fits when the centre-aligned IoU of box and anchor shape > iou_t (YOLOv3).
    Unlike YOLOv5, a position learns one box only: the best fit (lowest ratio / highest IoU).
    Works on those few candidate positions per box only, never on B x G x A.
    """

    heads = frozenset({"anchor"})
    needs = "anchor shapes to match boxes against"
    optional_hyp = {"iou_mode": "ratio"}
    # own cell, then neighbours left, up, right, down (x, y)
    _OFFSETS = ((0, 0), (-1, 0), (0, -1), (1, 0), (0, 1))

    def __init__(self, anchor_t: float, mode: str, iou_t: float):
        if mode not in ("ratio", "iou"):
            raise ValueError(f"iou assigner: mode must be 'ratio' or 'iou', got {mode!r}")
        self.anchor_t, self.mode, self.iou_t = float(anchor_t), mode, float(iou_t)

    @classmethod
    def from_hyp(cls, hyp: Mapping[str, Any]) -> IoUAssigner:
        return cls(hyp["anchor_t"], cls.hyp_value(hyp, "iou_mode"), hyp["iou_t"])

    def bytes_per_box(self, grid: CellGrid, batch: int, itemsize: int) -> int:
        return batch * sum(lv.na * len(self._OFFSETS) for lv in grid.layout) * (24 + 4 * itemsize)

    def claims(self, grid: CellGrid, gt_boxes: torch.Tensor, gt_mask: torch.Tensor,
               gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None, g0: int) -> Claims:
        b, g = gt_mask.shape
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        wh = gt_boxes[..., 2:] - gt_boxes[..., :2]
        offsets = torch.tensor(self._OFFSETS, device=gt_boxes.device, dtype=gt_boxes.dtype)
        nb = len(self._OFFSETS)
        idx_l, q_l, v_l = [], [], []
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
            q_l.append(quality[..., None].expand(b, g, lv.na, nb).reshape(b, g, -1))
            v_l.append((fits[..., None] & use[:, :, None, :] & gt_mask[:, :, None, None]).reshape(b, g, -1))
        return Claims.from_mask(torch.cat(v_l, -1), torch.cat(idx_l, -1), torch.cat(q_l, -1), g0)
