"""What both losses share: the head behind any wrapper, the loss dtype, padded and checked targets,
and the BCE / focal and box terms (the cell grid and the box decodes are utils/grid.py's, as the heads')."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.assign import DEFAULT_FOR_HEAD, Assigner, build_assigner
from utils.boxes import aligned_iou, nwd
from utils.torch_utils import unwrap


def detect_head(model: nn.Module) -> nn.Module:
    """The Detect layer: model.detect, through DDP/DataParallel, or a Detect-like object itself."""
    m = unwrap(model)
    if hasattr(m, "detect"):
        return m.detect
    if all(hasattr(m, k) for k in ("nl", "nc", "stride")):
        return m
    raise TypeError(f"{type(m).__name__} has no .detect layer (need nl, nc, stride)")


def head_kind(det: nn.Module) -> str:
    """'anchor-free' for DetectDFL, 'anchor' for Detect (the keys of utils.assign.HEADS)."""
    return "anchor-free" if getattr(det, "anchor_free", False) else "anchor"


def pick_assigner(model: nn.Module, hyp: Mapping[str, Any], name: str | None, head: str) -> Assigner:
    """The assigner named by the caller, else the hyp's ``assigner``, else the model YAML's, else the
    head's default; an unknown name or one that does not fit the head is a ValueError naming the choices.
    (In training utils/config.py has resolved --assigner into both the hyp and the model YAML.)"""
    yaml_cfg = getattr(unwrap(model), "yaml", None) or {}
    name = name or hyp.get("assigner") or yaml_cfg.get("assigner") or DEFAULT_FOR_HEAD[head]
    return build_assigner(name, hyp, head)


def loss_dtype(preds: list[torch.Tensor]) -> torch.dtype:
    """fp16/bf16 maps -> an fp32 loss; fp32/fp64 maps keep theirs."""
    return torch.promote_types(preds[0].dtype, torch.float32)


def check_maps(preds: list[torch.Tensor], nl: int) -> None:
    if len(preds) != nl:
        raise ValueError(f"expected {nl} prediction maps, got {len(preds)}")


class PaddedTargets(NamedTuple):
    boxes: torch.Tensor  # (B, G, 4) xyxy pixels, zeros in padding rows
    cls: torch.Tensor    # (B, G) long
    mask: torch.Tensor   # (B, G) bool: a real box


def targets_to_padded(targets: torch.Tensor, batch_size: int) -> PaddedTargets:
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
    return PaddedTargets(boxes, cls, mask)


def checked_targets(targets: torch.Tensor, batch_size: int, nc: int, device: torch.device,
                    dtype: torch.dtype) -> PaddedTargets:
    """targets_to_padded on the loss's device and dtype, with classes checked against nc."""
    gt = targets_to_padded(targets.to(device, dtype), batch_size)
    if gt.mask.any() and int(gt.cls[gt.mask].max()) >= nc:
        raise ValueError(f"targets hold class {int(gt.cls[gt.mask].max())} but nc={nc}")
    return gt


def nwd_weight(hyp: Mapping[str, Any]) -> float:
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


def bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor | None = None,
        gamma: float = 0.0, alpha: float = 0.25) -> torch.Tensor:
    """Elementwise BCE-with-logits, optionally focal (Lin et al. 2017) when gamma > 0."""
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    if gamma > 0:
        p = logits.sigmoid()
        p_t = target * p + (1 - target) * (1 - p)
        a_t = target * alpha + (1 - target) * (1 - alpha)
        loss = loss * a_t * (1.0 - p_t) ** gamma
    return loss
