"""The cell grid that the heads, assigners and losses share, and the two box decodes on it.

Positions run level, anchor, y, x (x fastest): the eval-mode order of both heads. A position's
point is its cell centre ``(x + 0.5) * stride`` in input pixels; on the anchor head every cell
holds ``na`` positions, one per anchor shape, and the anchor-free head has one and no shapes.
The heads (models/head.py) decode their eval-mode boxes and the losses (utils/loss) their training
boxes with the same functions here (``anchor_boxes``, ``distance_boxes``) on the same grid (``GridCache``).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def cell_indices(h: int, w: int, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(h * w, 2) integer (x, y) of every cell of an h x w grid, row by row (x fastest)."""
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                          torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack((x, y), -1).view(-1, 2)


@dataclass(frozen=True)
class LevelLayout:
    """Where one level sits in the flat position list: index = start + (a * h + y) * w + x."""

    start: int
    na: int
    h: int
    w: int
    stride: float
    anchor_wh: torch.Tensor | None  # (na, 2) pixels; None on the anchor-free head

    @property
    def size(self) -> int:
        return self.na * self.h * self.w

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        """This level's rows of a flat per-position array (a view)."""
        return t[self.start:self.start + self.size]

    def dims(self, like: torch.Tensor) -> torch.Tensor:
        """(w, h) as a tensor on ``like``'s device and dtype."""
        return torch.tensor([self.w, self.h], device=like.device, dtype=like.dtype)


@dataclass(frozen=True)
class CellGrid:
    """Flat per-position arrays (A positions) and the per-level layout they come from."""

    xy: torch.Tensor                 # (A, 2) cell centres, pixels
    stride: torch.Tensor             # (A,)
    level: torch.Tensor              # (A,) long
    layout: tuple[LevelLayout, ...]
    wh: torch.Tensor | None = None   # (A, 2) anchor shapes, pixels; None: anchor-free

    @property
    def num(self) -> int:
        return self.xy.shape[0]

    @classmethod
    def from_flat(cls, xy: torch.Tensor, wh: torch.Tensor | None, stride: torch.Tensor,
                  level: torch.Tensor) -> CellGrid:
        """Rebuild the layout from flat arrays alone (one small host sync), e.g. from an anchor table."""
        counts = torch.bincount(level).tolist()
        starts = [sum(counts[:i]) for i in range(len(counts))]
        stats = torch.stack([torch.stack((stride[s0], xy[s0:s0 + n, 0].max(), xy[s0:s0 + n, 1].max()))
                             for s0, n in zip(starts, counts)]).tolist()
        layout = []
        for i, ((s, xmax, ymax), s0, n) in enumerate(zip(stats, starts, counts)):
            w, h = round(xmax / s + 0.5), round(ymax / s + 0.5)
            na = n // max(h * w, 1)
            if na * h * w != n or n == 0:
                raise ValueError(f"level {i}: {n} positions do not form an (na, {h}, {w}) grid; "
                                 "positions must run level, anchor, y, x")
            shapes = None if wh is None else wh[s0:s0 + n:h * w]
            layout.append(LevelLayout(s0, na, h, w, s, shapes))
        return cls(xy, stride, level, tuple(layout), wh)


def make_grid(strides: Sequence[float], shapes: Sequence[tuple[int, int]],
              anchors: torch.Tensor | None = None, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> CellGrid:
    """The grid of maps ``shapes`` [(h, w)] per level at ``strides``.

    ``anchors`` (nl, na, 2) pixels for the anchor head (device and dtype then follow it), or None
    for the anchor-free head (one position per cell).
    """
    if anchors is not None:
        device, dtype = anchors.device, anchors.dtype
    na = 1 if anchors is None else anchors.shape[1]
    nl = len(strides) if anchors is None else anchors.shape[0]
    if not nl == len(strides) == len(shapes):
        raise ValueError(f"{nl} levels of anchors, {len(strides)} strides and {len(shapes)} grids")
    xy, wh, st, lv, layout, start = [], [], [], [], [], 0
    for i, ((h, w), s) in enumerate(zip(shapes, strides)):
        n = na * h * w
        centres = (cell_indices(h, w, device, dtype) + 0.5) * s
        xy.append(centres.expand(na, h * w, 2).reshape(n, 2))
        if anchors is not None:
            wh.append(anchors[i].view(na, 1, 2).expand(na, h * w, 2).reshape(n, 2))
        st.append(torch.full((n,), float(s), device=device, dtype=dtype))
        lv.append(torch.full((n,), i, device=device, dtype=torch.long))
        layout.append(LevelLayout(start, na, h, w, float(s), None if anchors is None else anchors[i]))
        start = start + n  # not +=: while tracing n is a tensor, and += would change the start just stored
    return CellGrid(torch.cat(xy), torch.cat(st), torch.cat(lv), tuple(layout),
                    torch.cat(wh) if anchors is not None else None)


class GridCache:
    """CellGrids by map sizes, device and dtype, each checked against the strides and anchors it was built
    from (autoanchor and checkpoint loading rewrite those in place); the ``size`` most recent are kept.
    The check reads a tensor's storage and in-place version counter, never its values, so a hit costs no
    GPU synchronisation. While tracing (export) nothing is cached: the grid must be traced from the
    input's shape, or one input size would be frozen into the graph."""

    def __init__(self, size: int = 1):
        self.size = size
        self._grids: OrderedDict[tuple, tuple[tuple, tuple, CellGrid]] = OrderedDict()

    def clear(self) -> None:
        self._grids.clear()

    def get(self, strides: Sequence[float] | torch.Tensor, shapes: Sequence[Sequence[int]],
            anchors: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> CellGrid:
        """The grid of maps ``shapes`` [(h, w)] per level; ``anchors`` (nl, na, 2) pixels or None (anchor-free)."""
        if torch.jit.is_tracing():
            return make_grid(_floats(strides), [tuple(s) for s in shapes],
                             None if anchors is None else anchors.detach().to(device, dtype), device, dtype)
        key = (tuple(tuple(int(v) for v in s) for s in shapes), device, dtype)
        sig = (_signature(strides), _signature(anchors))
        hit = self._grids.get(key)
        if hit is not None and hit[0] == sig:
            self._grids.move_to_end(key)
            return hit[2]
        grid = make_grid(_floats(strides), list(key[0]),
                         None if anchors is None else anchors.detach().to(device, dtype), device, dtype)
        # the entry holds the source tensors, so their storage (part of the signature) is not reused meanwhile
        self._grids[key] = (sig, (strides, anchors), grid)
        self._grids.move_to_end(key)
        while len(self._grids) > self.size:
            self._grids.popitem(last=False)
        return grid


def _floats(strides: Sequence[float] | torch.Tensor) -> list[float]:
    return [float(s) for s in (strides.tolist() if isinstance(strides, torch.Tensor) else strides)]


def _signature(v: Sequence[float] | torch.Tensor | None) -> tuple:
    """What identifies a value without reading a tensor's data: its storage, shape, dtype and version counter
    (bumped by every in-place write: autoanchor's, load_state_dict's copy_)."""
    if v is None:
        return ()
    if isinstance(v, torch.Tensor):
        return ("tensor", v.data_ptr(), tuple(v.shape), v.dtype, v.device, v._version)
    return ("values", *map(float, v))


def anchor_boxes(sig_xy: torch.Tensor, sig_wh: torch.Tensor, centre: torch.Tensor, stride: torch.Tensor | float,
                 anchor_wh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLOv5's (v6) anchor-box decode of sigmoid outputs: centre xy = (2 * sig - 0.5 + cell) * stride, i.e.
    within (-1, 1) strides of the cell centre; wh = (2 * sig)^2 * anchor, at most 4x the anchor.
    ``centre`` cell centres in pixels, ``stride`` and ``anchor_wh`` (pixels) broadcast against them.
    Returns (xy, wh) in pixels."""
    return (sig_xy * 2 - 1) * stride + centre, (sig_wh * 2) ** 2 * anchor_wh


def distance_boxes(ltrb: torch.Tensor, centre: torch.Tensor, xywh: bool = False) -> torch.Tensor:
    """The anchor-free decode: (..., 4) distances left, top, right, bottom from the cell centres ``centre``
    (..., 2), both in pixels -> (..., 4) xyxy boxes, or xywh (centre, size) with ``xywh``."""
    lt, rb = ltrb[..., :2], ltrb[..., 2:]
    if xywh:
        return torch.cat((centre + (rb - lt) / 2, lt + rb), -1)
    return torch.cat((centre - lt, centre + rb), -1)
