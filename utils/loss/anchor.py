"""DetectionLoss: box (CIoU / NWD blend), objectness and class losses for YOLO-style heads.

Targets are assigned by a pluggable assigner (utils/assign/assigners.py); everything after the
assignment is vectorised over images and boxes, with loops over levels only.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.assign.assigners import build_assigner, make_anchor_points
from utils.boxes import NWD_C, aligned_iou, nwd

HYP_DEFAULTS = {
    "box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0, "fl_gamma": 0.0,
    "label_smoothing": 0.0, "nwd": 0.0, "nwd_c": NWD_C, "imgsz": 640,
}

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


def nwd_weight(hyp: dict) -> float:
    """hyp ``nwd``, the NWD share of the box loss, checked to lie in [0, 1]."""
    w = float(hyp["nwd"])
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"hyp nwd must be in [0, 1], got {w}")
    return w


def box_quality(pbox: torch.Tensor, tbox: torch.Tensor, nwd_w: float, nwd_c: float) -> torch.Tensor:
    """(1 - nwd_w) * CIoU + nwd_w * NWD of aligned xyxy boxes; 1 - quality is the box loss."""
    ciou = aligned_iou(pbox, tbox, "ciou")
    if nwd_w > 0:
        return (1 - nwd_w) * ciou + nwd_w * nwd(pbox, tbox, nwd_c)
    return ciou


def smooth_bce_targets(eps: float) -> tuple[float, float]:
    """Positive and negative class targets under label smoothing ``eps`` (0 = hard 1/0)."""
    return 1.0 - 0.5 * eps, 0.5 * eps


def _detect_of(model: nn.Module):
    """The Detect layer: model.detect, through DDP/DataParallel, or a Detect-like object."""
    m = getattr(model, "module", model)
    if hasattr(m, "detect"):
        return m.detect
    if all(hasattr(m, k) for k in ("nl", "na", "nc", "anchors", "stride")):
        return m
    raise TypeError(f"{type(m).__name__} has no .detect layer (need nl, na, nc, anchors, stride)")


def targets_to_padded(targets: torch.Tensor, batch_size: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M, 6) [batch_idx, cls, cx, cy, w, h] -> boxes (B, G, 4) xyxy, cls (B, G) long,
    mask (B, G) bool, with G the most boxes in one image."""
    if targets.ndim != 2 or targets.shape[1] != 6:
        raise ValueError(f"targets must be (M, 6) [batch_idx, cls, cx, cy, w, h], "
                         f"got {tuple(targets.shape)}")
    dev = targets.device
    bi = targets[:, 0].long()
    counts = torch.bincount(bi, minlength=batch_size)
    if counts.numel() > batch_size or (bi < 0).any():
        raise ValueError(f"targets carry batch indices outside 0..{batch_size - 1}")
    g = int(counts.max()) if targets.shape[0] else 0
    boxes = torch.zeros(batch_size, g, 4, device=dev, dtype=targets.dtype)
    cls = torch.zeros(batch_size, g, device=dev, dtype=torch.long)
    mask = torch.zeros(batch_size, g, device=dev, dtype=torch.bool)
    if g:
        order = torch.sort(bi, stable=True).indices
        t, bi = targets[order], bi[order]
        slot = torch.arange(t.shape[0], device=dev) - (counts.cumsum(0) - counts)[bi]
        xy, wh = t[:, 2:4], t[:, 4:6]
        boxes[bi, slot] = torch.cat((xy - wh / 2, xy + wh / 2), 1)
        cls[bi, slot] = t[:, 1].long()
        mask[bi, slot] = True
    return boxes, cls, mask


def _bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor,
         gamma: float, alpha: float = 0.25) -> torch.Tensor:
    """Elementwise BCE-with-logits, optionally focal (Lin et al. 2017) when gamma > 0."""
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight,
                                              reduction="none")
    if gamma > 0:
        p = logits.sigmoid()
        p_t = target * p + (1 - target) * (1 - p)
        a_t = target * alpha + (1 - target) * (1 - alpha)
        loss = loss * a_t * (1.0 - p_t) ** gamma
    return loss


class DetectionLoss:
    """YOLO loss: ``loss(preds, targets) -> (total * batch_size, items [box, obj, cls])``.

    preds: list of nl raw maps (B, na, H, W, 5 + nc); targets: (M, 6) in input pixels.
    - box: per level, mean over positives of (1 - nwd) * (1 - CIoU) + nwd * (1 - NWD),
      summed over levels; pred boxes decode as the head does (YOLOv5 v6).
    - obj: BCE over all cells; positives' target is their (blended) box quality, detached
      and clipped at 0 (IoU-aware); per-level mean weighted by ``level_balance(stride)``.
    - cls: BCE over positives with label smoothing (only when nc > 1).
    Gains follow YOLOv5's scaling: box *= 3/nl, cls *= nc/80 * 3/nl,
    obj *= (imgsz/640)^2 * 3/nl -- applied here, so train.py must not scale them again.
    """

    item_names = ("box", "obj", "cls")

    def __init__(self, model: nn.Module, hyp: dict | None = None, imgsz: int | None = None,
                 assigner: str | None = None):
        det = _detect_of(model)
        h = {**HYP_DEFAULTS, **(hyp or {})}
        self.nc, self.na, self.nl = int(det.nc), int(det.na), int(det.nl)
        self.strides = [float(s) for s in det.stride]
        if len(self.strides) != self.nl or min(self.strides) <= 0:
            raise ValueError(f"Detect strides not set: {self.strides} (run the model's dry run)")
        self.det = det
        imgsz = imgsz if imgsz is not None else h["imgsz"]
        levels = 3.0 / self.nl
        self.box_gain = h["box"] * levels
        self.cls_gain = h["cls"] * self.nc / 80.0 * levels
        self.obj_gain = h["obj"] * (imgsz / 640.0) ** 2 * levels
        self.balance = [level_balance(s) for s in self.strides]
        self.nwd_w = nwd_weight(h)
        self.nwd_c = float(h["nwd_c"])
        self.cp, self.cn = smooth_bce_targets(float(h["label_smoothing"]))
        self.gamma = float(h["fl_gamma"])
        self.cls_pw, self.obj_pw = float(h["cls_pw"]), float(h["obj_pw"])
        yaml_cfg = getattr(getattr(model, "module", model), "yaml", None) or {}
        name = assigner or h.get("assigner") or yaml_cfg.get("assigner") or "iou"
        self.assigner_name = name
        self.assigner = build_assigner(name, h)
        self._grid_cache: dict = {}

    def _anchors(self, preds: list[torch.Tensor], dt: torch.dtype):
        """Flat anchor arrays for these grid sizes (cached) plus per-anchor obj weights."""
        shapes = tuple(tuple(p.shape[2:4]) for p in preds)
        anchors = self.det.anchors.detach().to(preds[0].device, dt)
        key = (shapes, preds[0].device, dt)
        hit = self._grid_cache.get(key)
        if hit is not None and torch.equal(hit[0], anchors):
            return hit[1]
        xy, wh, st, lv, layout = make_anchor_points(anchors, self.strides, list(shapes))
        # obj loss = sum_l balance_l * mean over level l's cells, as one weighted sum
        counts = torch.tensor([self.na * h * w for h, w in shapes], dtype=dt)
        per = torch.tensor(self.balance, dtype=dt) / counts
        obj_w = per.to(xy.device)[lv]
        out = (xy, wh, st, lv, layout, obj_w)
        self._grid_cache = {key: (anchors.clone(), out)}
        return out

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(preds) != self.nl:
            raise ValueError(f"expected {self.nl} prediction maps, got {len(preds)}")
        bsz, dev = preds[0].shape[0], preds[0].device
        dt = torch.promote_types(preds[0].dtype, torch.float32)  # fp16/bf16 maps -> fp32 loss
        xy, wh, st, lv, layout, obj_w = self._anchors(preds, dt)
        gt_boxes, gt_cls, gt_mask = targets_to_padded(targets.to(dev, dt), bsz)
        if gt_mask.any() and int(gt_cls[gt_mask].max()) >= self.nc:
            raise ValueError(f"targets hold class {int(gt_cls[gt_mask].max())} but nc={self.nc}")
        with torch.no_grad():
            fg, gt_idx = self.assigner(xy, wh, st, lv, gt_boxes, gt_mask, layout=layout)

        # gather positives level by level (views, no copy of the full maps)
        rows, b_l, a_l = [], [], []
        for p, lay in zip(preds, layout):
            n_l = lay.na * lay.h * lay.w
            b, a = fg[:, lay.start:lay.start + n_l].nonzero(as_tuple=True)
            rows.append(p.reshape(bsz, n_l, -1)[b, a])
            b_l.append(b)
            a_l.append(a + lay.start)
        ps = torch.cat(rows).to(dt)
        b, a = torch.cat(b_l), torch.cat(a_l)
        g = gt_idx[b, a]
        level = lv[a]
        n_pos = torch.bincount(level, minlength=self.nl).clamp(min=1).to(dt)

        # box: decode like the head (xy within (-1, 1) strides of the cell centre)
        pxy = (ps[:, :2].sigmoid() * 2 - 1) * st[a, None] + xy[a]
        pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * wh[a]
        pbox = torch.cat((pxy - pwh / 2, pxy + pwh / 2), 1)
        tbox = gt_boxes[b, g]
        quality = box_quality(pbox, tbox, self.nwd_w, self.nwd_c)
        box_err = 1 - quality
        lbox = (torch.zeros(self.nl, device=dev, dtype=dt).index_add(0, level, box_err) / n_pos).sum()

        # objectness over every cell; IoU-aware target on positives
        pobj = torch.cat([p[..., 4].reshape(bsz, -1) for p in preds], 1).to(dt)
        tobj = torch.zeros_like(pobj)
        tobj[b, a] = quality.detach().clamp(min=0).to(tobj.dtype)
        obj_pw = torch.tensor(self.obj_pw, device=dev, dtype=dt)
        lobj = (_bce(pobj, tobj, obj_pw, self.gamma).sum(0) * obj_w).sum() / bsz

        # classes over positives
        if self.nc > 1:
            tcls = torch.full_like(ps[:, 5:], self.cn)
            tcls[torch.arange(ps.shape[0], device=dev), gt_cls[b, g]] = self.cp
            cls_pw = torch.tensor(self.cls_pw, device=dev, dtype=dt)
            per_box = _bce(ps[:, 5:], tcls, cls_pw, self.gamma).mean(1)
            lcls = (torch.zeros(self.nl, device=dev, dtype=dt).index_add(0, level, per_box) / n_pos).sum()
        else:
            lcls = torch.zeros((), device=dev, dtype=dt)

        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        return (lbox + lobj + lcls) * bsz, torch.stack((lbox, lobj, lcls)).detach()
