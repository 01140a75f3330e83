"""Task-aligned assignment (TOOD, Feng et al. 2021) for the anchor-free DetectDFL head.

Per ground-truth box, the candidate cells are those whose centre lies inside the box, plus,
at every level, the cell holding the box centre: a 6 px box has no cell centre inside it
on a stride-8 grid, and without that cell it would never be learned. Candidates are ranked by
the alignment metric ``score^alpha * IoU^beta`` (score: the predicted probability of the
box's class; IoU: of the predicted box), and the ``topk`` best become positives. A cell
claimed by several boxes keeps the one its prediction overlaps most. The class target of a
positive is the alignment normalised per box so that the best cell of each box gets that
cell's IoU; everything else is trained towards 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from utils.boxes import aligned_iou


@dataclass
class TalTargets:
    fg: torch.Tensor       # (B, A) bool: positive cells
    gt_idx: torch.Tensor   # (B, A) long: which box a positive learns (0 elsewhere)
    boxes: torch.Tensor    # (B, A, 4) xyxy pixels: the box each cell learns
    scores: torch.Tensor   # (B, A, nc) soft class targets


class TaskAlignedAssigner:
    """``assigner(pred_scores, pred_boxes, points, strides, gt_boxes, gt_cls, gt_mask)``.

    pred_scores (B, A, nc) probabilities; pred_boxes (B, A, 4) xyxy pixels; points (A, 2)
    cell centres in pixels; strides (A,); gt_boxes (B, G, 4) xyxy; gt_cls (B, G) long;
    gt_mask (B, G) bool. Dense over (B, G, A): fine for the few dozen boxes per image of
    the intended data; the IoU is computed for candidates only.
    """

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        self.topk, self.alpha, self.beta, self.eps = int(topk), float(alpha), float(beta), eps

    @classmethod
    def from_hyp(cls, hyp: dict) -> TaskAlignedAssigner:
        return cls(hyp.get("tal_topk", 10), hyp.get("tal_alpha", 0.5), hyp.get("tal_beta", 6.0))

    def candidates(self, points: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor,
                   gt_mask: torch.Tensor) -> torch.Tensor:
        """(B, G, A) bool: centre inside the box, or the cell that holds the box centre."""
        p = points.view(1, 1, -1, 2)
        x1y1, x2y2 = gt_boxes[..., None, :2], gt_boxes[..., None, 2:]
        inside = torch.cat((p - x1y1, x2y2 - p), -1).amin(-1) > self.eps
        centre = (x1y1 + x2y2) / 2
        half = strides.view(1, 1, -1, 1) / 2
        holds = ((centre - p).abs() <= half).all(-1)
        return (inside | holds) & gt_mask[..., None]

    @torch.no_grad()
    def __call__(self, pred_scores: torch.Tensor, pred_boxes: torch.Tensor, points: torch.Tensor,
                 strides: torch.Tensor, gt_boxes: torch.Tensor, gt_cls: torch.Tensor,
                 gt_mask: torch.Tensor) -> TalTargets:
        b, a, nc = pred_scores.shape
        g = gt_boxes.shape[1]
        dev, dt = pred_scores.device, pred_scores.dtype
        if g == 0 or not gt_mask.any():
            return TalTargets(torch.zeros(b, a, dtype=torch.bool, device=dev),
                              torch.zeros(b, a, dtype=torch.long, device=dev),
                              torch.zeros(b, a, 4, device=dev, dtype=dt),
                              torch.zeros(b, a, nc, device=dev, dtype=dt))
        cand = self.candidates(points, strides, gt_boxes, gt_mask)  # (B, G, A)
        bi, gi, ai = cand.nonzero(as_tuple=True)
        overlaps = torch.zeros(b, g, a, device=dev, dtype=dt)
        overlaps[bi, gi, ai] = aligned_iou(pred_boxes[bi, ai], gt_boxes[bi, gi], "ciou").clamp(min=0).to(dt)
        score = torch.zeros_like(overlaps)
        score[bi, gi, ai] = pred_scores[bi, ai, gt_cls[bi, gi]]
        metric = score.pow(self.alpha) * overlaps.pow(self.beta)

        # top-k candidates per box; ties and all-zero metrics fall to the lowest index
        k = min(self.topk, a)
        top = metric.masked_fill(~cand, -1.0).topk(k, -1).indices  # (B, G, k)
        pos = torch.zeros_like(cand).scatter_(-1, top, True) & cand

        # a cell claimed by several boxes keeps the one its prediction overlaps most
        multi = pos.sum(1) > 1  # (B, A)
        if multi.any():
            best = overlaps.masked_fill(~pos, -1.0).argmax(1)  # (B, A)
            only = torch.zeros_like(pos).scatter_(1, best.unsqueeze(1), True)
            pos = torch.where(multi.unsqueeze(1), only & pos, pos)
        fg = pos.any(1)
        gt_idx = pos.to(torch.uint8).argmax(1)  # the one box left per positive cell; 0 off fg

        # soft targets: alignment rescaled per box so its best cell gets its best IoU
        metric = metric * pos
        norm = (metric * overlaps.mul(pos).amax(-1, keepdim=True)
                / (metric.amax(-1, keepdim=True) + self.eps)).amax(1)  # (B, A)
        cls_of = gt_cls.gather(1, gt_idx)  # (B, A)
        scores = torch.zeros(b, a, nc, device=dev, dtype=dt)
        scores.scatter_(-1, cls_of.unsqueeze(-1), norm.unsqueeze(-1))  # norm is 0 off fg
        boxes = gt_boxes.gather(1, gt_idx.unsqueeze(-1).expand(b, a, 4))
        return TalTargets(fg, gt_idx, boxes, scores)
