"""DetectionLoss: box (CIoU / NWD blend), objectness and class losses for the anchor-based Detect head.

Targets come from an anchor-head assigner (utils/assign: iou or atss); everything after the
assignment is vectorised over images and boxes, with loops over levels only.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from utils.grid import CellGrid, GridCache, anchor_boxes
from utils.loss.ignore import ignored_positions, split_ignore
from utils.loss.common import (bce, box_quality, check_maps, checked_targets, detect_head, loss_dtype,
                               nwd_weight, pick_assigner, smooth_bce_targets)

# Objectness weight per level, by stride. YOLOv5 uses 4.0, 1.0, 0.4 (P3-P5) and 4.0, 1.0,
# 0.25, 0.06 (P3-P6): apart from P5's 0.4 that is 4 * (8 / stride)^2, i.e. every *cell*
# weighs the same whatever its level (a level's loss is a mean over its cells, and a level
# has (8/stride)^2 times P3's cells). Stride 4 keeps that rule: 4 * 2^2 = 16, so a tiny
# object's cell on P2 counts as much as a small object's cell on P3. YOLOv5 indexes its
# list by level number instead, which gives a P2-P5 model's P2 the weight meant for P3.
_BALANCE = {8: 4.0, 16: 1.0, 32: 0.4, 64: 0.06}


def level_balance(stride: float) -> float:
    """Objectness weight of a level with this stride (see _BALANCE)."""
    s = int(round(stride))
    return _BALANCE.get(s, 4.0 * (8.0 / stride) ** 2)


class DetectionLoss:
    """YOLO loss: ``loss(preds, targets) -> (total * batch_size, items [box, obj, cls])``.

    preds: list of nl raw maps (B, na, H, W, 5 + nc); targets: (M, 6) in input pixels.
    - box: per level, mean over positives of (1 - nwd) * (1 - CIoU) + nwd * (1 - NWD),
      summed over levels; pred boxes decode as the head does (YOLOv5 v6).
    - obj: BCE over all cells; positives' target is their (blended) box quality, detached
      and clipped at 0 (IoU-aware); per-level mean weighted by ``level_balance(stride)``.
    - cls: BCE over positives with label smoothing (only when nc > 1).
    - ignore regions (target rows of class IGNORE_CLASS): positions whose cell centre lies in one give
      no loss of any kind (utils/loss/ignore.py).
    Gains follow YOLOv5's scaling: box *= 3/nl, cls *= nc/80 * 3/nl,
    obj *= (imgsz/640)^2 * 3/nl -- applied here, so train.py must not scale them again.
    ``hyp`` is a complete hyp mapping (utils/config.py; a missing key is a KeyError naming it).
    """

    item_names = ("box", "obj", "cls")

    def __init__(self, model: nn.Module, hyp: Mapping[str, Any], imgsz: int, assigner: str | None = None):
        det = detect_head(model)
        if getattr(det, "anchor_free", False):
            raise TypeError("DetectionLoss needs the anchor-based Detect head; use DFLLoss for DetectDFL")
        self.nc, self.na, self.nl = int(det.nc), int(det.na), int(det.nl)
        self.strides = [float(s) for s in det.stride]
        if len(self.strides) != self.nl or min(self.strides) <= 0:
            raise ValueError(f"Detect strides not set: {self.strides} (run the model's dry run)")
        self.det = det
        levels = 3.0 / self.nl
        self.box_gain = hyp["box"] * levels
        self.cls_gain = hyp["cls"] * self.nc / 80.0 * levels
        self.obj_gain = hyp["obj"] * (imgsz / 640.0) ** 2 * levels
        self.balance = [level_balance(s) for s in self.strides]
        self.nwd_w, self.nwd_c = nwd_weight(hyp), float(hyp["nwd_c"])
        self.cp, self.cn = smooth_bce_targets(float(hyp["label_smoothing"]))
        self.gamma = float(hyp["fl_gamma"])
        self.cls_pw, self.obj_pw = float(hyp["cls_pw"]), float(hyp["obj_pw"])
        self.assigner = pick_assigner(model, hyp, assigner, "anchor")
        self.assigner_name = self.assigner.name
        self._grids = GridCache()
        self._obj_w: tuple[CellGrid, torch.Tensor] | None = None

    def _obj_weights(self, grid: CellGrid, dt: torch.dtype) -> torch.Tensor:
        """Per-position objectness weight: obj loss = sum_l balance_l * mean over level l's cells."""
        if self._obj_w is None or self._obj_w[0] is not grid:
            counts = torch.tensor([lv.size for lv in grid.layout], dtype=dt)
            per = torch.tensor(self.balance, dtype=dt) / counts
            self._obj_w = (grid, per.to(grid.xy.device)[grid.level])
        return self._obj_w[1]

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        check_maps(preds, self.nl)
        bsz, dev = preds[0].shape[0], preds[0].device
        dt = loss_dtype(preds)
        grid = self._grids.get(self.strides, [p.shape[2:4] for p in preds], self.det.anchors, dev, dt)
        obj_w = self._obj_weights(grid, dt)
        targets, regions = split_ignore(targets)
        gt_boxes, gt_cls, gt_mask = checked_targets(targets, bsz, self.nc, dev, dt)
        assigned = self.assigner(grid, gt_boxes, gt_mask, gt_cls=gt_cls)
        fg, gt_idx = assigned.fg, assigned.gt_idx
        keep = None if regions is None else ~ignored_positions(grid.xy, regions, bsz)
        if keep is not None:  # positions in an ignore region: neither positives nor background
            fg = fg & keep
        xy, wh, st, lv = grid.xy, grid.wh, grid.stride, grid.level

        # the (image, position, box) pairs that learn: the assigner's own list where a position may learn
        # several boxes (YOLOv5's rule), else one pair per positive
        if assigned.pairs is not None:
            pb, pa, pg = assigned.pairs.unbind(1)
            if keep is not None:  # the same rule for every pair: none learns inside an ignore region
                on = keep[pb, pa]
                pb, pa, pg = pb[on], pa[on], pg[on]
        else:
            pb, pa = fg.nonzero(as_tuple=True)
            pg = gt_idx[pb, pa]
        # gather them level by level (views, no copy of the full maps)
        rows, b_l, a_l, g_l = [], [], [], []
        for p, lay in zip(preds, grid.layout):
            on = (pa >= lay.start) & (pa < lay.start + lay.size)
            b, a = pb[on], pa[on]
            rows.append(p.reshape(bsz, lay.size, -1)[b, a - lay.start])
            b_l.append(b)
            a_l.append(a)
            g_l.append(pg[on])
        ps = torch.cat(rows).to(dt)
        b, a, g = torch.cat(b_l), torch.cat(a_l), torch.cat(g_l)
        level = lv[a]
        n_pos = torch.bincount(level, minlength=self.nl).clamp(min=1).to(dt)

        # box: the head's decode (utils/grid.py)
        pxy, pwh = anchor_boxes(ps[:, :2].sigmoid(), ps[:, 2:4].sigmoid(), xy[a], st[a, None], wh[a])
        pbox = torch.cat((pxy - pwh / 2, pxy + pwh / 2), 1)
        tbox = gt_boxes[b, g]
        quality = box_quality(pbox, tbox, self.nwd_w, self.nwd_c)
        box_err = 1 - quality
        lbox = (torch.zeros(self.nl, device=dev, dtype=dt).index_add(0, level, box_err) / n_pos).sum()

        # objectness over every cell; IoU-aware target on positives
        pobj = torch.cat([p[..., 4].reshape(bsz, -1) for p in preds], 1).to(dt)
        tobj = torch.zeros_like(pobj)
        # a position learning several boxes takes the quality of the one the assigner names (gt_idx)
        own = gt_idx[b, a] == g
        tobj[b[own], a[own]] = quality.detach().clamp(min=0).to(tobj.dtype)[own]
        obj_pw = torch.tensor(self.obj_pw, device=dev, dtype=dt)
        obj_err = bce(pobj, tobj, obj_pw, self.gamma)
        if keep is not None:
            obj_err = torch.where(keep, obj_err, 0.0)
        lobj = (obj_err.sum(0) * obj_w).sum() / bsz

        # classes over positives
        if self.nc > 1:
            tcls = torch.full_like(ps[:, 5:], self.cn)
            tcls[torch.arange(ps.shape[0], device=dev), gt_cls[b, g]] = self.cp
            cls_pw = torch.tensor(self.cls_pw, device=dev, dtype=dt)
            per_box = bce(ps[:, 5:], tcls, cls_pw, self.gamma).mean(1)
            lcls = (torch.zeros(self.nl, device=dev, dtype=dt).index_add(0, level, per_box) / n_pos).sum()
        else:
            lcls = torch.zeros((), device=dev, dtype=dt)

        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        return (lbox + lobj + lcls) * bsz, torch.stack((lbox, lobj, lcls)).detach()
