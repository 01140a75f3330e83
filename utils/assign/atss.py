"""ATSSAssigner: adaptive training sample selection (Zhang et al. 2020), on YOLO anchors or on the
anchor-free head's cells (as PP-YOLOE and YOLOv6 do, alone or as TAL's warm-up)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from utils.assign.base import Assigner
from utils.assign.claims import Claims
from utils.grid import CellGrid, LevelLayout, cell_indices
from utils.assign.registry import register_assigner
from utils.assign.result import Assignment
from utils.boxes import aligned_iou, nwd


def window_radius(topk: int) -> tuple[int, int]:
    """(q, R): on a grid at least q cells each way, a window of half-width R cells around a box's
    own cell surely holds its top-k nearest cell centres.

    Some q x q block of cells (q = ceil(sqrt(k))) lies within q-1 cells of the box's own cell even
    at a corner; its centres are at most sqrt(2) * (q - 0.5) cells from the box centre, while any
    cell more than R away is at least R + 0.5 away. So R + 0.5 >= sqrt(2) * (q - 0.5) suffices.
    """
    q = math.ceil(math.sqrt(topk))
    return q, math.ceil(math.sqrt(2) * (q - 0.5) - 0.5)


@register_assigner("atss")
class ATSSAssigner(Assigner):
    """Per box and level take the ``topk`` cells nearest the box centre, with every anchor
    shape there, as candidates (so topk * na per level: cells tie in distance across shapes,
    so choosing cells rather than anchors keeps the choice well defined). Threshold =
    mean + std (unbiased) of the candidates' IoU over all levels; positives have
    IoU >= threshold and their cell centre strictly inside the box. ``force_positive``
    gives a box with no positive its best candidate (tiny boxes often contain no cell
    centre). ``use_nwd`` scores with NWD (constant ``nwd_c`` px) instead of IoU. A position
    claimed by several boxes goes to the highest score. The nearest cells are found in a
    window around the box's own cell (``window_radius``), so the cost grows with the boxes,
    not with B x G x A.

    On the anchor-free head a cell has no anchor shape, so it stands for a square of side
    ``cell_size * stride`` centred on the cell (PP-YOLOE's and YOLOv6's grid_cell_size, 5.0),
    and cells equidistant at the k-th place go to the lower cell index. Given ``pred_scores``
    (and then gt_cls and pred_boxes), the Assignment carries soft class targets as DFLLoss
    needs: a positive's target for its box's class is the IoU of its predicted box with that
    box (PP-YOLOE, YOLOv6), 0 elsewhere.
    """

    heads = frozenset({"anchor", "anchor-free"})
    needs = "anchor shapes (anchor head) or cell strides (anchor-free head)"
    optional_hyp = {"atss_force_positive": True, "atss_nwd": False, "atss_cell_size": 5.0}

    def __init__(self, topk: int, force_positive: bool = True, use_nwd: bool = False,
                 nwd_c: float | None = None, cell_size: float = optional_hyp["atss_cell_size"]):
        if topk < 1:
            raise ValueError(f"atss assigner: topk must be >= 1, got {topk}")
        if use_nwd and nwd_c is None:
            raise ValueError("atss assigner: use_nwd needs nwd_c (the NWD constant in pixels)")
        if isinstance(cell_size, bool) or not isinstance(cell_size, (int, float)) or not 0 < cell_size < math.inf:
            raise ValueError(f"atss assigner: atss_cell_size must be a number > 0, got {cell_size!r}")
        self.topk, self.force_positive = int(topk), bool(force_positive)
        self.use_nwd, self.nwd_c = bool(use_nwd), None if nwd_c is None else float(nwd_c)
        self.cell_size = float(cell_size)
        self._q, radius = window_radius(self.topk)
        self._window = cell_indices(2 * radius + 1, 2 * radius + 1, dtype=torch.long) - radius  # (P, 2)

    @classmethod
    def from_hyp(cls, hyp: Mapping[str, Any]) -> ATSSAssigner:
        return cls(hyp["atss_topk"], cls.hyp_value(hyp, "atss_force_positive"),
                   cls.hyp_value(hyp, "atss_nwd"), hyp["nwd_c"], cls.hyp_value(hyp, "atss_cell_size"))

    def _anchor_wh(self, lv: LevelLayout, like: torch.Tensor) -> torch.Tensor:
        """(na, 2) pixels: the head's anchor shapes, or the anchor-free cell's square (one per cell)."""
        if lv.anchor_wh is not None:
            return lv.anchor_wh.to(like.dtype)
        return torch.full((1, 2), self.cell_size * lv.stride, device=like.device, dtype=like.dtype)

    def _cells(self, lv: LevelLayout, centre: torch.Tensor) -> torch.Tensor:
        """Cells (B, G, P, 2) that may be among each box's nearest; may fall off the grid."""
        dims = lv.dims(centre)
        if min(lv.h, lv.w) < self._q:
            # grid too thin for the window argument: every cell is a candidate (small grid)
            allc = cell_indices(lv.h, lv.w, centre.device, centre.dtype).view(1, 1, -1, 2)
            return allc.expand(*centre.shape[:2], -1, 2)
        cell = (centre / lv.stride).floor().clamp(min=torch.zeros_like(dims), max=dims - 1)
        return cell[:, :, None, :] + self._window.to(centre.device, centre.dtype)

    def bytes_per_box(self, grid: CellGrid, batch: int, itemsize: int) -> int:
        per = 0
        for lv in grid.layout:
            p = lv.h * lv.w if min(lv.h, lv.w) < self._q else self._window.shape[0]
            sort = itemsize + 8 if lv.anchor_wh is None else 0  # the anchor-free path's sorted copy and order
            per += p * (6 * itemsize + 2 + sort) + self.topk * lv.na * (12 * itemsize + 24)
        return batch * per

    def claims(self, grid: CellGrid, gt_boxes: torch.Tensor, gt_mask: torch.Tensor,
               gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None, g0: int) -> Claims:
        b, g = gt_mask.shape
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        gt = gt_boxes[:, :, None, None, :]  # (B, G, 1, 1, 4) against (B, G, k, na, 4)
        idx_l, sim_l, ok_l, inside_l = [], [], [], []
        for lv in grid.layout:
            cells = self._cells(lv, centre)
            on_grid = ((cells >= 0) & (cells < lv.dims(centre))).all(-1)
            cxy = (cells + 0.5) * lv.stride
            d2 = ((cxy - centre[:, :, None, :]) ** 2).sum(-1).masked_fill(~on_grid, float("inf"))
            k = min(self.topk, d2.shape[-1])
            if lv.anchor_wh is None:
                # anchor-free: equidistant cells at the k-th place go to the lower cell index (the
                # window runs y, x like the flat order), a rule a slow reference can reproduce
                d_top, j = (t[..., :k] for t in d2.sort(dim=-1, stable=True))
            else:
                # anchor head: topk's choice among equidistant cells, so its assignments stay as they were
                d_top, j = d2.topk(k, dim=-1, largest=False)  # (B, G, k)
            cxy = cxy.gather(2, j[..., None].expand(b, g, k, 2))
            cells = cells.gather(2, j[..., None].expand(b, g, k, 2))
            awh = self._anchor_wh(lv, gt_boxes).view(1, 1, 1, lv.na, 2)
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
        return Claims.from_mask(pos, idx, sim, g0)

    def __call__(self, grid: CellGrid, gt_boxes: torch.Tensor, gt_mask: torch.Tensor, *,
                 gt_cls: torch.Tensor | None = None, pred_scores: torch.Tensor | None = None,
                 pred_boxes: torch.Tensor | None = None) -> Assignment:
        if pred_scores is not None and (gt_cls is None or pred_boxes is None):
            raise ValueError("atss assigner: soft class targets (pred_scores given) need gt_cls and pred_boxes")
        return super().__call__(grid, gt_boxes, gt_mask, gt_cls=gt_cls, pred_scores=pred_scores,
                                pred_boxes=pred_boxes)

    def empty(self, batch: int, grid: CellGrid, gt_boxes: torch.Tensor,
              pred_scores: torch.Tensor | None) -> Assignment:
        return Assignment.empty(batch, grid.num, gt_boxes, None if pred_scores is None else pred_scores.shape[-1])

    def finish(self, claims: Claims, won: torch.Tensor, fg: torch.Tensor, gt_idx: torch.Tensor,
               gt_boxes: torch.Tensor, gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None) -> Assignment:
        """Hard assignment; with predictions, soft targets IoU(predicted box, its gt box) at the gt class."""
        hard = Assignment(fg, gt_idx, gt_boxes)
        if pred_scores is None:
            return hard
        b, a, nc = pred_scores.shape
        quality = torch.zeros(b, a, device=fg.device, dtype=pred_scores.dtype)
        quality[fg] = aligned_iou(pred_boxes[fg], hard.boxes[fg], "iou").clamp(min=0).to(pred_scores.dtype)
        scores = torch.zeros(b, a, nc, device=fg.device, dtype=pred_scores.dtype)
        scores.scatter_(-1, gt_cls.gather(1, gt_idx).unsqueeze(-1), quality.unsqueeze(-1))  # 0 off fg
        return Assignment(fg, gt_idx, gt_boxes, scores)
