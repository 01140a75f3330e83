"""Claims: the positives each box wants, before boxes that want the same position are reconciled.

Every assigner chooses positives box by box, so it can work through the boxes a chunk at a time
and list its choices here; one exact resolution over all of them then gives each position to one
box, however the boxes were chunked.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Claims:
    """N claims: image ``b`` wants position ``a`` for box ``g`` with match ``quality`` (higher is better)."""

    b: torch.Tensor        # (N,) long
    g: torch.Tensor        # (N,) long, index into the full (unchunked) box list
    a: torch.Tensor        # (N,) long
    quality: torch.Tensor  # (N,)
    extra: torch.Tensor | None = None  # (N,) anything an assigner carries to its last step (tal: its metric)

    @classmethod
    def from_mask(cls, keep: torch.Tensor, position: torch.Tensor, quality: torch.Tensor, g0: int = 0,
                  extra: torch.Tensor | None = None) -> Claims:
        """Claims from per-candidate tensors (B, G_chunk, C): ``keep`` which candidates, ``position``,
        ``quality`` (and ``extra``) of each. ``g0`` is the chunk's first box, so ``g`` indexes all boxes."""
        b, g, c = keep.nonzero(as_tuple=True)
        return cls(b, g + g0, position[b, g, c], quality[b, g, c], None if extra is None else extra[b, g, c])

    @classmethod
    def cat(cls, parts: Sequence[Claims]) -> Claims:
        extra = None if parts[0].extra is None else torch.cat([p.extra for p in parts])
        return cls(*(torch.cat([getattr(p, k) for p in parts]) for k in ("b", "g", "a", "quality")), extra)

    def resolve(self, batch: int, num_boxes: int, num: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """fg (B, A), gt_idx (B, A) and which claims won (N,) bool.

        A position claimed by several boxes goes to the highest quality; exact ties go to the lowest
        box index. Max and min are exact whatever the order, so the answer does not depend on how the
        claims were gathered.
        """
        dev = self.a.device
        key = self.b * num + self.a
        best = torch.full((batch * num,), float("-inf"), device=dev, dtype=self.quality.dtype)
        best = best.scatter_reduce(0, key, self.quality, reduce="amax")
        winner = self.quality == best[key]
        gt_of = torch.where(winner, self.g, torch.full_like(self.g, num_boxes))
        gt_idx = torch.full((batch * num,), num_boxes, device=dev, dtype=torch.long)
        gt_idx = gt_idx.scatter_reduce(0, key, gt_of, reduce="amin")
        won = winner & (gt_idx[key] == self.g)
        fg = gt_idx < num_boxes
        return fg.view(batch, num), gt_idx.masked_fill(~fg, 0).view(batch, num), won
