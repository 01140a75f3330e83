"""Assigner: the one interface of label assignment (which positions learn which ground-truth box).

    assigner(grid, gt_boxes (B, G, 4) xyxy, gt_mask (B, G) bool,
             gt_cls=(B, G) long, pred_scores=(B, A, nc), pred_boxes=(B, A, 4) xyxy) -> Assignment

``grid`` is the CellGrid of the head's maps (utils/grid.py); the class and prediction
arguments are for assigners that need them (``needs_predictions``; tal) or use them when given
(atss: soft class targets). An assigner fits the heads named in ``heads``: 'anchor' (Detect: anchor
shapes) or 'anchor-free' (DetectDFL).

Boxes are worked through in chunks whose size keeps the (B, chunk, ...) intermediates within
``chunk_bytes``; each chunk lists its claims (utils/assign/claims.py) and one resolution combines
them exactly, so memory stays bounded however many boxes an image holds, time grows linearly with
them, and the answer does not depend on the chunk size.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from utils.assign.claims import Claims
from utils.grid import CellGrid
from utils.assign.result import Assignment

HEADS = {"anchor": "the anchor-based Detect head", "anchor-free": "the anchor-free DetectDFL head"}


class Assigner(ABC):
    """Base of every assigner; subclasses implement ``from_hyp``, ``claims`` and ``bytes_per_box``."""

    name: ClassVar[str] = ""              # its registry name (set by register_assigner)
    heads: ClassVar[frozenset[str]]       # keys of HEADS this assigner fits
    needs: ClassVar[str]                  # what it needs from a head, for errors ("anchor shapes")
    needs_predictions: ClassVar[bool] = False
    # hyp keys that configs/hyps/default.yaml does not hold, with their defaults: their only home
    optional_hyp: ClassVar[Mapping[str, Any]] = {}
    # bytes of (B, chunk, ...) intermediates per chunk of boxes; only memory and speed depend on it
    chunk_bytes: int = 256 * 2 ** 20

    @classmethod
    @abstractmethod
    def from_hyp(cls, hyp: Mapping[str, Any]) -> Assigner:
        """The assigner configured from a hyp mapping (a missing key is a KeyError naming it)."""

    @classmethod
    def hyp_value(cls, hyp: Mapping[str, Any], key: str) -> Any:
        """hyp[key]; for a key of ``optional_hyp`` that hyp lacks, the default there."""
        return cls.optional_hyp[key] if key not in hyp and key in cls.optional_hyp else hyp[key]

    @abstractmethod
    def bytes_per_box(self, grid: CellGrid, batch: int, itemsize: int) -> int:
        """Rough peak bytes of one box's share of a chunk's intermediates (sizes the chunks)."""

    @abstractmethod
    def claims(self, grid: CellGrid, gt_boxes: torch.Tensor, gt_mask: torch.Tensor,
               gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None, g0: int) -> Claims:
        """The positives boxes ``g0 ..`` (this chunk: gt_* are (B, chunk, ...)) want, box by box."""

    def finish(self, claims: Claims, won: torch.Tensor, fg: torch.Tensor, gt_idx: torch.Tensor,
               gt_boxes: torch.Tensor, gt_cls: torch.Tensor | None, pred_scores: torch.Tensor | None,
               pred_boxes: torch.Tensor | None) -> Assignment:
        """The Assignment from the resolved claims (after all chunks, so anything computed here cannot
        depend on the chunking); assigners that make soft targets override this."""
        return Assignment(fg, gt_idx, gt_boxes)

    def empty(self, batch: int, grid: CellGrid, gt_boxes: torch.Tensor,
              pred_scores: torch.Tensor | None) -> Assignment:
        return Assignment.empty(batch, grid.num, gt_boxes)

    @torch.no_grad()
    def __call__(self, grid: CellGrid, gt_boxes: torch.Tensor, gt_mask: torch.Tensor, *,
                 gt_cls: torch.Tensor | None = None, pred_scores: torch.Tensor | None = None,
                 pred_boxes: torch.Tensor | None = None) -> Assignment:
        b, g = gt_mask.shape
        if gt_boxes.shape != (b, g, 4):
            raise ValueError(f"{self.name} assigner: gt_boxes {tuple(gt_boxes.shape)} for gt_mask {(b, g)}")
        if self.needs_predictions and (gt_cls is None or pred_scores is None or pred_boxes is None):
            raise ValueError(f"{self.name} assigner needs gt_cls, pred_scores and pred_boxes")
        if g == 0 or not gt_mask.any():
            return self.empty(b, grid, gt_boxes, pred_scores)
        step = max(1, self.chunk_bytes // max(1, self.bytes_per_box(grid, b, gt_boxes.element_size())))
        parts = [self.claims(grid, gt_boxes[:, s:s + step], gt_mask[:, s:s + step],
                             None if gt_cls is None else gt_cls[:, s:s + step], pred_scores, pred_boxes, s)
                 for s in range(0, g, step)]
        claims = Claims.cat(parts)
        fg, gt_idx, won = claims.resolve(b, g, grid.num)
        return self.finish(claims, won, fg, gt_idx, gt_boxes, gt_cls, pred_scores, pred_boxes)
