"""Ignore regions in the loss: label rows of class IGNORE_CLASS (COCO iscrowd=1 regions, carried through
augmentation with the boxes) are split off the targets, and every prediction position whose cell centre
lies inside one of its image's regions gets no loss at all: it is neither a positive nor background.
Without such rows nothing is computed and the losses are what they were (docs/ignore-regions.md)."""
from __future__ import annotations

import torch

from utils.boxes import IGNORE_CLASS


def split_ignore(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(M, 6) [batch_idx, cls, cx, cy, w, h] -> (object rows, ignore-region rows or None when there are none).
    Without ignore rows the targets come back as the same tensor."""
    if targets.ndim != 2 or targets.shape[0] == 0:
        return targets, None
    ign = targets[:, 1] == IGNORE_CLASS
    if not bool(ign.any()):
        return targets, None
    return targets[~ign], targets[ign]


def ignored_positions(points: torch.Tensor, regions: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(B, A) bool: position a of image b has its point (``points`` (A, 2) pixels) inside, or on the edge
    of, one of image b's regions (rows of ``regions`` (K, 6) [batch_idx, cls, cx, cy, w, h])."""
    out = torch.zeros(batch_size, points.shape[0], dtype=torch.bool, device=points.device)
    r = regions.to(points.device, points.dtype)
    xy, half = r[:, 2:4], r[:, 4:6] / 2
    lo, hi = xy - half, xy + half
    for b in r[:, 0].long().unique().tolist():  # a few images per batch hold regions; K x A per image
        sel = r[:, 0].long() == b
        p = points[None]
        inside = ((p >= lo[sel, None]) & (p <= hi[sel, None])).all(-1)  # (k, A)
        out[b] = inside.any(0)
    return out
