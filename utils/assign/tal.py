"""TaskAlignedAssigner (TOOD, Feng et al. 2021) for the anchor-free DetectDFL head.

Per ground-truth box, the candidate cells are those whose centre lies inside the box, plus,
at every level, the cell holding the box centre: a 6 px box has no cell centre inside it
on a stride-8 grid, and without that cell it would never be learned. Candidates are ranked by
the alignment metric ``score^alpha * IoU^beta`` (score: the predicted probability of the
box's class; IoU: of the predicted box), and the ``topk`` best become positives. A cell
claimed by several boxes keeps the one its prediction overlaps most. The class target of a
positive is the alignment normalised per box so that the best cell of each box gets that
cell's IoU; everything else is trained towards 0.

STAL (``stal``; Ultralytics YOLO26's small-target-aware assignment): for the inside test only,
a box side shorter than the finest stride is widened about the box centre to twice that stride
(the next level's stride, as Ultralytics does), so a 3 px box's candidates include the finest
cells around it, not only the one holding its centre. Widening to the finest stride itself
would add nothing here: such a box's inside cells are already among the cells holding its
centre. IoUs and targets use the real boxes.

The ranking needs every cell of a box's row (B, G, A), so boxes go through in chunks (see
utils/assign/base.py) and only their positives (at most topk per box) are kept between chunks.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from utils.assign.base import Assigner
from utils.assign.claims import Claims
from utils.grid import CellGrid
from utils.assign.registry import register_assigner
from utils.assign.result import Assignment
from utils.boxes import aligned_iou

# On CPU, pow with a general exponent runs SLEEF in a kernel call's SIMD body and the C library in
# its scalar tail (the last len % 32 elements, and the end of each thread's share), which can differ
# in the last bit: a candidate's metric would depend on how many others share its call, i.e. on the
# chunking. Calls whose length is a multiple of 64, each below the size that splits a call between
# threads (at::internal::GRAIN_SIZE, 32768), keep every element on the SIMD path.
_POW_BLOCK, _POW_CALL = 64, 32768 - 64


def uniform_pow(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """x ** exponent for a 1-D tensor, each element's value independent of x's length (see above)."""
    if x.device.type != "cpu":
        return x.pow(exponent)
    n = x.numel()
    padded = torch.cat((x, x.new_zeros(-n % _POW_BLOCK)))
    return torch.cat([part.pow(exponent) for part in padded.split(_POW_CALL)])[:n]


def widen_small(boxes: torch.Tensor, finest: float) -> torch.Tensor:
    """(..., 4) xyxy boxes with every side shorter than ``finest`` set to ``2 * finest`` about the box
    centre (STAL); other sides keep their exact coordinates."""
    lo, hi = boxes[..., :2], boxes[..., 2:]
    centre = (lo + hi) / 2
    small = (hi - lo) < finest
    return torch.cat((torch.where(small, centre - finest, lo), torch.where(small, centre + finest, hi)), -1)


@register_assigner("tal")
class TaskAlignedAssigner(Assigner):
    """See the module docstring; ``topk`` positives per box, metric ``score^alpha * IoU^beta``."""

    heads = frozenset({"anchor-free"})
    needs = "predicted class scores and boxes at every cell (DFLLoss passes them)"
    needs_predictions = True
    # atss_warmup_epochs: DFLLoss learns with atss for the first N epochs, then with tal (PP-YOLOE's
    # static_assigner_epoch, YOLOv6's warmup_epoch); owned here because it is how tal training starts
    optional_hyp = {"tal_alpha": 0.5, "tal_beta": 6.0, "tal_stal": False, "atss_warmup_epochs": 0}

    def __init__(self, topk: int, alpha: float = optional_hyp["tal_alpha"],
                 beta: float = optional_hyp["tal_beta"], eps: float = 1e-9,
                 stal: bool = optional_hyp["tal_stal"]):
        if not isinstance(stal, bool):
            raise ValueError(f"tal assigner: tal_stal must be true or false, got {stal!r}")
        self.topk, self.alpha, self.beta, self.eps = int(topk), float(alpha), float(beta), eps
        self.stal = stal

    @classmethod
    def from_hyp(cls, hyp: Mapping[str, Any]) -> TaskAlignedAssigner:
        return cls(hyp["tal_topk"], cls.hyp_value(hyp, "tal_alpha"), cls.hyp_value(hyp, "tal_beta"),
                   stal=cls.hyp_value(hyp, "tal_stal"))

    def candidates(self, grid: CellGrid, gt_boxes: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
        """(B, G, A) bool: centre inside the box, or the cell that holds the box centre.

        Both tests are separable on a level's grid (x and y apart), so they run on (B, G, w) and
        (B, G, h) and meet in one outer product per level, not in passes over (B, G, A) floats.
        """
        x1, y1, x2, y2 = (gt_boxes[..., i, None] for i in range(4))  # (B, G, 1) each
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        if self.stal:  # the inside test sees small boxes widened; the centre test the real ones
            x1, y1, x2, y2 = widen_small(gt_boxes, min(lv.stride for lv in grid.layout)).unbind(-1)
            x1, y1, x2, y2 = x1[..., None], y1[..., None], x2[..., None], y2[..., None]
        out = torch.empty(*gt_mask.shape, grid.num, dtype=torch.bool, device=gt_boxes.device)
        m = gt_mask[..., None]
        for lv in grid.layout:
            if lv.na != 1:
                raise ValueError("tal assigner: one position per cell expected (the anchor-free grid)")
            px = grid.xy[lv.start:lv.start + lv.w, 0]            # cell centres of row 0
            py = grid.xy[lv.start:lv.start + lv.size:lv.w, 1]    # and of column 0
            half = grid.stride[lv.start] / 2
            inside_x = (px - x1 > self.eps) & (x2 - px > self.eps)  # (B, G, w)
            inside_y = (py - y1 > self.eps) & (y2 - py > self.eps) & m
            holds_x = (cx - px).abs() <= half
            holds_y = ((cy - py).abs() <= half) & m
            cells = (inside_y[..., :, None] & inside_x[..., None, :]) | (holds_y[..., :, None] & holds_x[..., None, :])
            out[..., lv.start:lv.start + lv.size] = cells.flatten(-2)
        return out

    def bytes_per_box(self, grid: CellGrid, batch: int, itemsize: int) -> int:
        return batch * grid.num * (4 * itemsize + 8)

    def empty(self, batch: int, grid: CellGrid, gt_boxes: torch.Tensor,
              pred_scores: torch.Tensor | None) -> Assignment:
        return Assignment.empty(batch, grid.num, pred_scores, pred_scores.shape[-1])

    def claims(self, grid: CellGrid, gt_boxes: torch.Tensor, gt_mask: torch.Tensor,
               gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None, g0: int) -> Claims:
        b, a, _ = pred_scores.shape
        dt = pred_scores.dtype
        cand = self.candidates(grid, gt_boxes, gt_mask)  # (B, G, A)
        bi, gi, ai = cand.nonzero(as_tuple=True)
        ov = aligned_iou(pred_boxes[bi, ai], gt_boxes[bi, gi], "ciou").clamp(min=0).to(dt)
        score = pred_scores[bi, ai, gt_cls[bi, gi]]
        overlaps = torch.zeros(cand.shape, device=cand.device, dtype=dt)
        overlaps[bi, gi, ai] = ov
        metric = torch.full(cand.shape, -1.0, device=cand.device, dtype=dt)  # -1: not a candidate
        metric[bi, gi, ai] = uniform_pow(score, self.alpha) * uniform_pow(ov, self.beta)
        # top-k candidates per box (a box with fewer candidates gets only those); topk's order among
        # equal metrics decides ties, and it sees the same full rows however the boxes are chunked
        top = metric.topk(min(self.topk, a), -1).indices  # (B, G, k)
        return Claims.from_mask(cand.gather(-1, top), top, overlaps.gather(-1, top), g0,
                                extra=metric.gather(-1, top))

    def finish(self, claims: Claims, won: torch.Tensor, fg: torch.Tensor, gt_idx: torch.Tensor,
               gt_boxes: torch.Tensor, gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None) -> Assignment:
        """Soft targets: alignment rescaled per box so that its best cell gets its best IoU."""
        b, a, nc = pred_scores.shape
        g = gt_boxes.shape[1]
        cb, cg, ca = claims.b[won], claims.g[won], claims.a[won]
        overlap, metric = claims.quality[won], claims.extra[won]
        key = cb * g + cg
        zeros = torch.zeros(b * g, device=fg.device, dtype=metric.dtype)
        best_overlap = zeros.scatter_reduce(0, key, overlap, reduce="amax")  # 0 for a box without positives
        best_metric = zeros.scatter_reduce(0, key, metric, reduce="amax")
        norm = torch.zeros(b, a, device=fg.device, dtype=metric.dtype)
        norm[cb, ca] = metric * best_overlap[key] / (best_metric[key] + self.eps)
        cls_of = gt_cls.gather(1, gt_idx)  # (B, A)
        scores = torch.zeros(b, a, nc, device=fg.device, dtype=metric.dtype)
        scores.scatter_(-1, cls_of.unsqueeze(-1), norm.unsqueeze(-1))  # norm is 0 off fg
        return Assignment(fg, gt_idx, gt_boxes, scores)
