"""Assignment: what every assigner returns, whichever head it serves."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class Assignment:
    """Per image and position: does it learn a box, which one, and (from some assigners) soft class targets.

    A position learns at most one box, unless ``pairs`` lists more (YOLOv5's rule). ``gt_idx`` and
    ``boxes`` off the positives hold box 0's index and box, so a caller indexes them with ``fg`` and never
    needs to mask them.
    """

    fg: torch.Tensor                     # (B, A) bool: positives
    gt_idx: torch.Tensor                 # (B, A) long: the box a positive learns, 0 elsewhere
    gt_boxes: torch.Tensor               # (B, G, 4) xyxy pixels: the boxes gt_idx points into
    scores: torch.Tensor | None = None   # (B, A, nc) soft class targets (tal); None: the loss makes hard ones
    # YOLOv5's rule (the iou assigner) lets a position learn several boxes, and one box the same position
    # twice: every (image, position, box) pair that learns, (N, 3) long, in the assigner's order; fg / gt_idx
    # then hold the pair whose match quality is the position's objectness target. None: the fg positions.
    pairs: torch.Tensor | None = None

    @cached_property
    def boxes(self) -> torch.Tensor:
        """(B, A, 4) the box each position learns; built on first use (the anchor loss never needs it)."""
        b, a = self.gt_idx.shape
        return self.gt_boxes.gather(1, self.gt_idx.unsqueeze(-1).expand(b, a, 4))

    @classmethod
    def empty(cls, batch: int, num: int, like: torch.Tensor, nc: int | None = None) -> Assignment:
        """Nothing assigned: no positives, zero boxes (and zero class targets over ``nc`` classes)."""
        dev, dt = like.device, like.dtype
        return cls(torch.zeros(batch, num, dtype=torch.bool, device=dev),
                   torch.zeros(batch, num, dtype=torch.long, device=dev),
                   torch.zeros(batch, 1, 4, dtype=dt, device=dev),  # one zero box that every position points at
                   None if nc is None else torch.zeros(batch, num, nc, dtype=dt, device=dev))
