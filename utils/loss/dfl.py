"""DFLLoss: the loss of the anchor-free DetectDFL head (models/head.py).

- cls: BCE over every cell and class against the task-aligned soft targets (utils/assign/tal.py),
  summed and divided by the sum of the targets (so the loss does not scale with box count);
- box: (1 - CIoU), blended with (1 - NWD) by hyp ``nwd`` as for the anchor head, weighted
  per positive by its target score;
- dfl: Distribution Focal Loss on the four distance distributions: cross-entropy towards
  the two bins either side of the true distance, weighted by proximity (Li et al. 2020).
Gains: hyp ``dfl_box`` (7.5), ``dfl_cls`` (0.5), ``dfl`` (1.5), YOLOv8's published values.
Returns ``(total * batch_size, [box, dfl, cls])`` like DetectionLoss.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.boxes import NWD_C
from utils.loss.anchor import DetectionLoss, box_quality, nwd_weight, targets_to_padded
from utils.assign.tal import TaskAlignedAssigner

# the assigner's own defaults (tal_topk, tal_alpha, tal_beta) live in TaskAlignedAssigner.from_hyp
DFL_HYP_DEFAULTS = {"dfl_box": 7.5, "dfl_cls": 0.5, "dfl": 1.5, "dfl_min_w": 0.0, "nwd": 0.0, "nwd_c": NWD_C}


def dfl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, 4, R) bin logits, (N, 4) distances in bins within [0, R - 1) -> (N,) mean over sides."""
    left = target.long()
    w_right = target - left
    logp = logits.float().log_softmax(-1)
    nll_l = -logp.gather(-1, left.unsqueeze(-1)).squeeze(-1)
    nll_r = -logp.gather(-1, (left + 1).unsqueeze(-1)).squeeze(-1)
    return ((1 - w_right) * nll_l + w_right * nll_r).mean(-1)


class DFLLoss:
    """Loss for DetectDFL models; see the module docstring."""

    item_names = ("box", "dfl", "cls")

    def __init__(self, model: nn.Module, hyp: dict | None = None):
        m = getattr(model, "module", model)
        det = m.detect
        if not getattr(det, "anchor_free", False):
            raise TypeError("DFLLoss needs the anchor-free DetectDFL head; use DetectionLoss")
        h = {**DFL_HYP_DEFAULTS, **(hyp or {})}
        name = (m.yaml or {}).get("assigner", "tal") if hasattr(m, "yaml") else "tal"
        if name != "tal":
            raise ValueError(f"the DetectDFL head learns with the 'tal' assigner, not {name!r} "
                             "('iou' and 'atss' match anchor shapes, which this head has none of)")
        self.det, self.nc, self.reg_max = det, int(det.nc), int(det.reg_max)
        self.box_gain, self.cls_gain, self.dfl_gain = float(h["dfl_box"]), float(h["dfl_cls"]), float(h["dfl"])
        self.nwd_w, self.nwd_c = nwd_weight(h), float(h["nwd_c"])
        self.assigner = TaskAlignedAssigner.from_hyp(h)
        self.min_w = float(h["dfl_min_w"])

    def _points(self, preds: list[torch.Tensor], dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pts, st = [], []
        for i, p in enumerate(preds):
            h, w = p.shape[2:4]
            s = float(self.det.stride[i])
            pts.append(self.det.points(i, h, w, p.device, dt) * s)
            st.append(torch.full((h * w,), s, device=p.device, dtype=dt))
        return torch.cat(pts), torch.cat(st)

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, dev = preds[0].shape[0], preds[0].device
        dt = torch.promote_types(preds[0].dtype, torch.float32)
        if len(preds) != self.det.nl:
            raise ValueError(f"expected {self.det.nl} prediction maps, got {len(preds)}")
        raw = torch.cat([p.reshape(bsz, -1, p.shape[-1]) for p in preds], 1).to(dt)
        r4 = 4 * self.reg_max
        dist_logits, cls_logits = raw[..., :r4], raw[..., r4:]
        points, strides = self._points(preds, dt)
        d = self.det.distances(dist_logits) * strides[:, None]  # ltrb pixels
        pbox = torch.cat((points - d[..., :2], points + d[..., 2:]), -1)

        gt_boxes, gt_cls, gt_mask = targets_to_padded(targets.to(dev, dt), bsz)
        if gt_mask.any() and int(gt_cls[gt_mask].max()) >= self.nc:
            raise ValueError(f"targets hold class {int(gt_cls[gt_mask].max())} but nc={self.nc}")
        t = self.assigner(cls_logits.detach().sigmoid(), pbox.detach(), points, strides,
                          gt_boxes, gt_cls, gt_mask)
        score_sum = t.scores.sum().clamp(min=1.0)

        lcls = F.binary_cross_entropy_with_logits(cls_logits, t.scores, reduction="sum") / score_sum
        lbox = ldfl = torch.zeros((), device=dev, dtype=dt)
        if t.fg.any():
            weight = t.scores.sum(-1)[t.fg].clamp(min=self.min_w)
            pb, tb = pbox[t.fg], t.boxes[t.fg]
            err = 1 - box_quality(pb, tb, self.nwd_w, self.nwd_c)
            # a weighted mean over positives: the floor (dfl_min_w) must not inflate the loss
            wsum = weight.sum().clamp(min=1.0)
            lbox = (err * weight).sum() / wsum
            pt, st = points.expand(bsz, -1, -1)[t.fg], strides.expand(bsz, -1)[t.fg]
            ltrb = torch.cat((pt - tb[:, :2], tb[:, 2:] - pt), -1) / st[:, None]
            ltrb = ltrb.clamp(0, self.reg_max - 1 - 0.01)
            lg = dist_logits[t.fg].unflatten(-1, (4, self.reg_max))
            ldfl = (dfl_loss(lg, ltrb) * weight).sum() / wsum

        lbox, lcls, ldfl = lbox * self.box_gain, lcls * self.cls_gain, ldfl * self.dfl_gain
        return (lbox + lcls + ldfl) * bsz, torch.stack((lbox, ldfl, lcls)).detach()


def build_loss(model: nn.Module, hyp: dict):
    """DFLLoss for an anchor-free head, DetectionLoss (anchor-based) otherwise."""
    if getattr(model, "module", model).detect.anchor_free:
        return DFLLoss(model, hyp)
    return DetectionLoss(model, hyp)
