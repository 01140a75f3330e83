"""The YOLO heads for any set of levels (P2-P6): Detect (anchor-based) and DetectDFL (anchor-free), on one
base class (HeadBase) that owns what they share: class count, levels, strides, the cell grid and the eval-mode
output layout. Their boxes decode with utils/grid.py's functions, the ones the losses use."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from models.registry import register
from utils.grid import CellGrid, GridCache, LevelLayout, anchor_boxes, distance_boxes

# YOLOv5's P3 anchors (10,13, 16,30, 33,23) in units of the level's stride; used to make
# default anchors for ``anchors: N`` configs (autoanchor refines them from the data).
_BASE_ANCHORS = ((1.25, 1.625), (2.0, 3.75), (4.125, 2.875))


BIN_WIDTH, BIN_WIDTH_MAX = 1.0, 4.0  # DetectDFL: grid cells per DFL bin (YOLOv8's), and the most allowed
REG_MAX = 16  # DetectDFL: DFL bins per box side (YOLOv8's)
# DetectDFL class branch -> the kinds of its tower's two convs: full 3x3 (conv) or depthwise 3x3 + 1x1 (dw)
CLS_BRANCHES = {"conv": ("conv", "conv"), "dw": ("dw", "dw"), "conv-dw": ("conv", "dw")}


def check_bin_width(value: object, where: str) -> float:
    """A DFL bin width in grid cells, in (0, BIN_WIDTH_MAX], or a ValueError naming where it came from."""
    try:
        width = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        width = math.nan
    if not 0 < width <= BIN_WIDTH_MAX:
        raise ValueError(f"{where}: expected a DFL bin width in grid cells in (0, {BIN_WIDTH_MAX:g}], got {value!r}")
    return width


def default_anchors(strides: list[int], na: int = 3) -> list[list[float]]:
    """Anchor sizes in pixels per level, proportional to the stride."""
    base = [_BASE_ANCHORS[i % 3] for i in range(na)]
    scale = [1.0 + i // 3 for i in range(na)]
    return [[v * s * k for (w, h), k in zip(base, scale) for v in (w, h)] for s in strides]


GRIDS_KEPT = 8  # cell grids a head keeps cached: val's rectangular batches come in a few shapes


class HeadBase(nn.Module):
    """What both heads share: ``nc`` classes on ``nl`` levels, their ``stride`` (a buffer the Model sets
    after its dry run), ``na`` positions per cell, the cached cell grid (utils/grid.py, the one the losses
    build) and the eval-mode output every consumer reads (NMS, val, detect, the exports): (B, N, 5 + nc) rows
    [cx, cy, w, h (input px), obj, cls...] whose obj * cls is each class's score.

    A subclass sets ``anchor_free`` and ``na`` and defines ``init_biases``, ``maps`` (a level's input -> its
    raw map, what train mode returns) and ``decode_level`` (a raw map -> its output rows, what eval mode returns).
    """

    anchor_free = False  # True: no anchor shapes to fit or match (utils/assign picks the assigners by it)
    na = 1  # positions per cell
    # state-dict entries that older checkpoints hold and this head no longer has: dropped when loading (the
    # one place: every loader, resume and transfer included, goes through load_state_dict; models/sizing.py's
    # check of a checkpoint's weights against its YAML reads this list too)
    legacy_buffers: tuple[str, ...] = ()

    def __init__(self, nc: int, nl: int):
        super().__init__()
        self.nc, self.nl = nc, nl
        self.no = nc + 5  # eval-mode output width
        self.register_buffer("stride", torch.zeros(nl))  # set by Model after a dry run
        self.grids = GridCache(GRIDS_KEPT)

    @property
    def anchor_shapes(self) -> torch.Tensor | None:
        """(nl, na, 2) anchor sizes in pixels, or None on an anchor-free head."""
        return None

    def init_biases(self, image_size: int = 640, cls_prior: float | None = None) -> None:
        """Start the output biases at the head's priors (Model calls it once the strides are known)."""
        raise NotImplementedError

    def maps(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Level i's input (B, C, H, W) -> its raw map (B, na, H, W, C_raw)."""
        raise NotImplementedError

    def decode_level(self, p: torch.Tensor, grid: CellGrid, level: LevelLayout) -> torch.Tensor:
        """A level's raw map -> its (B, na * H * W, 5 + nc) output rows, on that level's part of the grid."""
        raise NotImplementedError

    def grid(self, raw: list[torch.Tensor]) -> CellGrid:
        """The cell grid of these raw maps, on their device and dtype."""
        return self.grids.get(self.stride, [p.shape[2:4] for p in raw], self.anchor_shapes, raw[0].device,
                              raw[0].dtype)

    def forward(self, xs: list[torch.Tensor]):
        raw = [self.maps(i, x) for i, x in enumerate(xs)]
        if self.training:
            return raw
        return self.decode(raw)

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Raw maps -> (B, N, 5 + nc) rows, positions in grid order (level, anchor, y, x)."""
        grid = self.grid(raw)
        return torch.cat([self.decode_level(p, grid, lv) for p, lv in zip(raw, grid.layout)], 1)

    @staticmethod
    def rows(xy: torch.Tensor, wh: torch.Tensor, obj: torch.Tensor | None, cls: torch.Tensor) -> torch.Tensor:
        """The output rows. A head without objectness (obj None) puts each position's best class score in the
        obj column and its class scores divided by it, so obj * cls stays each class's score and NMS's
        objectness pre-filter still drops the empty cells."""
        if obj is None:
            obj = cls.amax(-1, keepdim=True)
            cls = cls / obj.clamp(min=1e-12)
        return torch.cat((xy, wh, obj, cls), -1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.legacy_buffers:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self.grids.clear()  # grids on the old device/dtype would only hold memory
        return super()._apply(fn, *args, **kwargs)


@register()
class Detect(HeadBase):
    """Per level a 1x1 conv to na * (5 + nc) maps.

    Train mode returns the raw maps (B, na, H, W, no); eval mode returns decoded boxes
    (B, N, no) with xywh in input pixels and sigmoid scores. ``anchors`` is kept in pixels.
    """

    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int]):
        if len(anchors) != len(ch):
            raise ValueError(f"Detect: {len(anchors)} anchor levels for {len(ch)} inputs")
        super().__init__(nc, len(ch))
        self.na = len(anchors[0]) // 2
        if any(len(a) != 2 * self.na for a in anchors):
            raise ValueError("Detect: every level needs the same number of anchors")
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32)
                             .view(self.nl, self.na, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    @property
    def anchor_shapes(self) -> torch.Tensor:
        return self.anchors

    def init_biases(self, image_size: int = 640, cls_prior: float | None = None) -> None:
        """Start objectness near the true positive rate (~8 objects per 640 image) and class
        scores near 1/nc, so early training is not swamped by the easy negatives."""
        for conv, s in zip(self.m, self.stride.tolist()):
            b = conv.bias.detach().view(self.na, self.no)
            b[:, 4] += math.log(8 / (image_size / s) ** 2)
            p = cls_prior if cls_prior is not None else 0.6 / max(self.nc - 0.99, 0.01)
            b[:, 5:] += math.log(p)
            conv.bias.data = b.view(-1)

    def maps(self, i: int, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.m[i](x).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous()

    def decode_level(self, p: torch.Tensor, grid: CellGrid, level: LevelLayout) -> torch.Tensor:
        """(B, na, H, W, no) raw -> (B, na * H * W, no): xywh in input pixels, sigmoid objectness and classes."""
        b, _, h, w, _ = p.shape
        y = p.sigmoid()
        centre = level.rows(grid.xy).view(1, self.na, h, w, 2)
        anchor = level.rows(grid.wh).view(1, self.na, h, w, 2)
        xy, wh = anchor_boxes(y[..., :2], y[..., 2:4], centre, level.stride, anchor)
        return self.rows(xy, wh, y[..., 4:5], y[..., 5:]).view(b, -1, self.no)

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        nc, anchors = args[0], args[1]
        if isinstance(anchors, int):
            # placeholder strides; Model replaces them with real ones after its dry run
            anchors = default_anchors([2 ** (3 + i) for i in range(len(ch))], anchors)
        return cls(nc, anchors, ch), 0


@register()
class DetectDFL(HeadBase):
    """Anchor-free, decoupled YOLO head: per level a box branch predicting the four
    distances (left, top, right, bottom) from the cell centre as ``reg_max``-bin
    distributions (Distribution Focal Loss, Li et al. 2020), and a class branch.

    Faster to train from scratch than the anchor head (no anchor shapes to fit, no separate
    objectness, class scores trained towards box quality); learns with the 'tal' assigner (or 'atss').
    Train mode returns (B, 1, H, W, 4 * reg_max + nc) maps. Eval mode returns the same
    (B, N, 5 + nc) layout as Detect (HeadBase.rows: no objectness, so column 4 holds the best
    class score), so NMS, val and detect need no changes.
    YAML args: [nc, reg_max=16, bin width=1.0 grid cells, class branch conv|dw|conv-dw, or a list of one per level]
    (the yolov5*-dfl configs: [nc, reg_max, dfl_bin]; the -lite ones add dw, depthwise-separable class convs;
    -dfl-half [conv-dw, conv-dw, dw]: a full 3x3 then a depthwise-separable one on P3-P4).
    """

    anchor_free = True
    # before HeadBase this head subclassed Detect and kept an unused anchors buffer (ones, or default anchors)
    legacy_buffers = ("anchors",)

    def __init__(self, nc: int, ch: list[int], reg_max: int = REG_MAX, bin_width: float = BIN_WIDTH,
                 cls_branch: str | list[str] = "conv"):
        if reg_max < 2:
            raise ValueError(f"DetectDFL: reg_max must be >= 2, got {reg_max}")
        per_level = isinstance(cls_branch, (list, tuple))  # or one branch for every level
        branches = [str(b) for b in cls_branch] if per_level else [str(cls_branch)] * len(ch)
        if len(branches) != len(ch):
            raise ValueError(f"DetectDFL: {len(branches)} class branches {branches} for {len(ch)} levels")
        for b in branches:
            if b not in CLS_BRANCHES:
                raise ValueError(f"DetectDFL: class branch {b!r}: choose {' or '.join(CLS_BRANCHES)}")
        from models.blocks import Conv, DWConv

        super().__init__(nc, len(ch))
        self.reg_max = int(reg_max)
        self.n_raw = 4 * self.reg_max + nc
        # bin k stands for a distance of k * bin_width grid cells: 1.0 spans 0..reg_max-1 cells (YOLOv8's),
        # a narrower bin resolves small boxes finer over a shorter range (train.py --dfl-bin auto fits it)
        self.register_buffer("bins", torch.arange(self.reg_max, dtype=torch.float32), persistent=False)
        self.set_bin_width(bin_width)
        c2 = max(16, ch[0] // 4, 4 * self.reg_max)  # box branch width (YOLOv8's rule)
        c3 = max(ch[0], min(nc, 100))                 # class branch width
        self.box = nn.ModuleList(nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3),
                                               nn.Conv2d(c2, 4 * self.reg_max, 1)) for c in ch)

        def cls_conv(c1: int, c2: int, branch: str) -> nn.Module:
            """One 3x3 of the class tower; dw: depthwise 3x3 + 1x1 (YOLO11's), ~1/9 of the FLOPs at P3."""
            return nn.Sequential(DWConv(c1, c1, 3), Conv(c1, c2, 1)) if branch == "dw" else Conv(c1, c2, 3)

        def tower(c: int, b: str) -> nn.Sequential:
            first, second = CLS_BRANCHES[b]
            return nn.Sequential(cls_conv(c, c3, first), cls_conv(c3, c3, second), nn.Conv2d(c3, nc, 1))

        self.cls = nn.ModuleList(tower(c, b) for c, b in zip(ch, branches))

    def set_bin_width(self, bin_width: float) -> None:
        """Re-space the bins (train.py --dfl-bin, before training: weights learned with one width decode
        wrongly with another, so a checkpoint's YAML keeps it)."""
        self.bin_width = check_bin_width(bin_width, "DetectDFL")
        self.bins = torch.arange(self.reg_max, dtype=torch.float32, device=self.bins.device) * self.bin_width

    def init_biases(self, image_size: int = 640, cls_prior: float | None = None) -> None:
        """Box logits flat (mean distance ~reg_max/2 bins); class scores near ~5 objects per
        image spread over the classes, so the many empty cells start quiet."""
        for bx, cl, s in zip(self.box, self.cls, self.stride.tolist()):
            bx[-1].bias.data.fill_(1.0)
            p = cls_prior if cls_prior is not None else 5 / self.nc / (image_size / s) ** 2
            cl[-1].bias.data.fill_(math.log(p / (1 - p)))

    def maps(self, i: int, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat((self.box[i](x), self.cls[i](x)), 1)
        return y.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, H, W, 4R + nc)

    def distances(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., 4 * reg_max) bin logits -> (..., 4) expected ltrb distances in grid units."""
        x = logits.unflatten(-1, (4, self.reg_max))
        bins = self.bins.to(x.dtype)
        if self.reg_max >= 16 or x.device.type != "cpu":
            return x.softmax(-1) @ bins
        # PyTorch's CPU softmax is slow over a last dim this short: with the bins first, the P2 model's
        # batch of 16 x 8,500 cells at reg_max 4 takes 16 ms forward and backward instead of 72 (timed on
        # the CPU only, so CUDA keeps the plain form)
        return (x.movedim(-1, 0).softmax(0) * bins.view(-1, *[1] * (x.dim() - 1))).sum(0)

    def decode_level(self, p: torch.Tensor, grid: CellGrid, level: LevelLayout) -> torch.Tensor:
        """(B, 1, H, W, 4R + nc) raw -> (B, H * W, 5 + nc) rows (HeadBase.rows, without objectness)."""
        b, _, h, w, _ = p.shape
        p = p.reshape(b, h * w, self.n_raw)
        d = self.distances(p[..., :4 * self.reg_max]) * level.stride  # ltrb pixels
        box = distance_boxes(d, level.rows(grid.xy), xywh=True)
        return self.rows(box[..., :2], box[..., 2:], None, p[..., 4 * self.reg_max:].sigmoid())

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        nc = args[0]
        reg_max = int(args[1]) if len(args) > 1 else REG_MAX
        bin_width = args[2] if len(args) > 2 else BIN_WIDTH
        return cls(nc, ch, reg_max, bin_width, args[3] if len(args) > 3 else "conv"), 0
