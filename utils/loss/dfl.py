"""DFLLoss: the loss of the anchor-free DetectDFL head (models/head.py).

- cls: BCE over every cell and class against the assigner's soft targets (tal's alignment,
  utils/assign/tal.py, or atss's IoU), summed and divided by the sum of the targets (so the loss
  does not scale with box count);
- box: (1 - CIoU), blended with (1 - NWD) by hyp ``nwd`` as for the anchor head, weighted
  per positive by its target score;
- dfl: Distribution Focal Loss on the four distance distributions: cross-entropy towards
  the two bins either side of the true distance, weighted by proximity (Li et al. 2020).
Gains: hyp ``dfl_box``, ``dfl_cls``, ``dfl`` (YOLOv8's published values in default.yaml).
Returns ``(total * batch_size, [box, dfl, cls])`` like DetectionLoss.
Ignore regions (target rows of class IGNORE_CLASS): positions whose cell centre lies in one give no
loss of any kind (utils/loss/ignore.py).

The assigner is tal by default; atss (soft targets IoU(pred, gt)) also fits. With hyp
``atss_warmup_epochs`` N > 0, atss assigns for epochs < N and the chosen assigner after (PP-YOLOE,
YOLOv6): the Trainer calls ``set_epoch`` at the start of every epoch; before any call (outside a
training loop) the chosen assigner is used.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from utils.assign import Assigner, TaskAlignedAssigner, build_assigner
from utils.grid import GridCache, distance_boxes
from utils.loss.ignore import ignored_positions, split_ignore
from utils.loss.common import (bce, box_quality, check_maps, checked_targets, detect_head, loss_dtype,
                               nwd_weight, pick_assigner)


def dfl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, 4, R) bin logits, (N, 4) distances in bins within [0, R - 1) -> (N,) mean over sides."""
    left = target.long()
    w_right = target - left
    logp = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)  # fp16 up, fp64 kept
    nll_l = -logp.gather(-1, left.unsqueeze(-1)).squeeze(-1)
    nll_r = -logp.gather(-1, (left + 1).unsqueeze(-1)).squeeze(-1)
    return ((1 - w_right) * nll_l + w_right * nll_r).mean(-1)


def warmup_epochs(hyp: Mapping[str, Any]) -> int:
    """hyp ``atss_warmup_epochs`` (default in TaskAlignedAssigner.optional_hyp), checked: a whole number >= 0."""
    n = TaskAlignedAssigner.hyp_value(hyp, "atss_warmup_epochs")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not (n >= 0 and float(n).is_integer()):
        raise ValueError(f"hyp atss_warmup_epochs must be a whole number >= 0, got {n!r}")
    return int(n)


class DFLLoss:
    """Loss for DetectDFL models; see the module docstring. ``hyp`` is a complete hyp mapping."""

    item_names = ("box", "dfl", "cls")

    def __init__(self, model: nn.Module, hyp: Mapping[str, Any], assigner: str | None = None):
        det = detect_head(model)
        if not getattr(det, "anchor_free", False):
            raise TypeError("DFLLoss needs the anchor-free DetectDFL head; use DetectionLoss")
        self.det, self.nc, self.reg_max = det, int(det.nc), int(det.reg_max)
        self.box_gain, self.cls_gain, self.dfl_gain = float(hyp["dfl_box"]), float(hyp["dfl_cls"]), float(hyp["dfl"])
        self.nwd_w, self.nwd_c = nwd_weight(hyp), float(hyp["nwd_c"])
        self.min_w = float(hyp["dfl_min_w"])
        self.assigner = pick_assigner(model, hyp, assigner, "anchor-free")
        self.warmup_epochs = warmup_epochs(hyp)
        self.warmup_assigner = build_assigner("atss", hyp, "anchor-free") if self.warmup_epochs else None
        self.epoch: int | None = None  # set by the Trainer (set_epoch); None: no warm-up
        self.strides = [float(s) for s in det.stride]
        self._grids = GridCache()

    def set_epoch(self, epoch: int) -> None:
        """The epoch about to be trained (0-based), which decides the warm-up assigner."""
        self.epoch = int(epoch)

    @property
    def active_assigner(self) -> Assigner:
        """atss during the warm-up epochs, the chosen assigner after them."""
        if self.warmup_assigner is not None and self.epoch is not None and self.epoch < self.warmup_epochs:
            return self.warmup_assigner
        return self.assigner

    def _boxes(self, logits: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        """xyxy pixel boxes of the cells at ``points`` (pixels, one stride each) from their bin logits: the
        head's decode (utils/grid.py)."""
        return distance_boxes(self.det.distances(logits) * strides[..., None], points)

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, dev = preds[0].shape[0], preds[0].device
        dt = loss_dtype(preds)
        check_maps(preds, self.det.nl)
        raw = torch.cat([p.reshape(bsz, -1, p.shape[-1]) for p in preds], 1).to(dt)
        r4 = 4 * self.reg_max
        dist_logits, cls_logits = raw[..., :r4], raw[..., r4:]
        grid = self._grids.get(self.strides, [p.shape[2:4] for p in preds], None, dev, dt)
        points, strides = grid.xy, grid.stride
        with torch.no_grad():  # every cell's box feeds the assigner; only positives' boxes need a gradient
            pbox = self._boxes(dist_logits, points, strides)

        targets, regions = split_ignore(targets)
        gt_boxes, gt_cls, gt_mask = checked_targets(targets, bsz, self.nc, dev, dt)
        t = self.active_assigner(grid, gt_boxes, gt_mask, gt_cls=gt_cls, pred_scores=cls_logits.detach().sigmoid(),
                          pred_boxes=pbox)
        fg, scores = t.fg, t.scores
        keep = None if regions is None else ~ignored_positions(points, regions, bsz)
        if keep is not None:  # positions in an ignore region: neither positives nor background
            fg, scores = fg & keep, scores * keep[..., None]
        score_sum = scores.sum().clamp(min=1.0)

        cls_err = bce(cls_logits, scores)
        if keep is not None:
            cls_err = torch.where(keep[..., None], cls_err, 0.0)
        lcls = cls_err.sum() / score_sum
        lbox = ldfl = torch.zeros((), device=dev, dtype=dt)
        if fg.any():
            weight = scores.sum(-1)[fg].clamp(min=self.min_w)
            tb = t.boxes[fg]
            pt, st = points.expand(bsz, -1, -1)[fg], strides.expand(bsz, -1)[fg]
            fg_logits = dist_logits[fg]
            err = 1 - box_quality(self._boxes(fg_logits, pt, st), tb, self.nwd_w, self.nwd_c)
            # a weighted mean over positives: the floor (dfl_min_w) must not inflate the loss
            wsum = weight.sum().clamp(min=1.0)
            lbox = (err * weight).sum() / wsum
            # target distances in bins (grid cells / bin width), kept inside the last bin
            ltrb = torch.cat((pt - tb[:, :2], tb[:, 2:] - pt), -1) / (st[:, None] * self.det.bin_width)
            ltrb = ltrb.clamp(0, self.reg_max - 1 - 0.01)
            lg = fg_logits.unflatten(-1, (4, self.reg_max))
            ldfl = (dfl_loss(lg, ltrb) * weight).sum() / wsum

        lbox, lcls, ldfl = lbox * self.box_gain, lcls * self.cls_gain, ldfl * self.dfl_gain
        return (lbox + lcls + ldfl) * bsz, torch.stack((lbox, ldfl, lcls)).detach()

