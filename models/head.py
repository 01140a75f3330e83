"""Detect: the anchor-based YOLO head for any set of levels (P2-P6)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from models.registry import register
from utils.grid import cell_indices

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


@register()
class Detect(nn.Module):
    """Per level a 1x1 conv to na * (5 + nc) maps.

    Train mode returns the raw maps (B, na, H, W, no); eval mode returns decoded boxes
    (B, N, no) with xywh in input pixels and sigmoid scores. ``anchors`` is kept in pixels.
    """

    anchor_free = False  # DetectDFL: no anchor shapes to fit or match

    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int]):
        super().__init__()
        if len(anchors) != len(ch):
            raise ValueError(f"Detect: {len(anchors)} anchor levels for {len(ch)} inputs")
        self.nc = nc
        self.no = nc + 5
        self.nl = len(ch)
        self.na = len(anchors[0]) // 2
        if any(len(a) != 2 * self.na for a in anchors):
            raise ValueError("Detect: every level needs the same number of anchors")
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32)
                             .view(self.nl, self.na, 2))
        self.register_buffer("stride", torch.zeros(self.nl))  # set by Model after a dry run
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self._grids: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def init_biases(self, image_size: int = 640, cls_prior: float | None = None) -> None:
        """Start objectness near the true positive rate (~8 objects per 640 image) and class
        scores near 1/nc, so early training is not swamped by the easy negatives."""
        for conv, s in zip(self.m, self.stride.tolist()):
            b = conv.bias.detach().view(self.na, self.no)
            b[:, 4] += math.log(8 / (image_size / s) ** 2)
            p = cls_prior if cls_prior is not None else 0.6 / max(self.nc - 0.99, 0.01)
            b[:, 5:] += math.log(p)
            conv.bias.data = b.view(-1)

    def _grid(self, i: int, h: int, w: int, device: torch.device, dtype: torch.dtype):
        key = (i, h, w, device, dtype)
        if key not in self._grids:
            # offset -0.5 folded in: xy = (2*sig - 0.5 + cell) * stride
            grid = (cell_indices(h, w, device, dtype) - 0.5).view(1, 1, h, w, 2)
            anchor = self.anchors[i].to(device, dtype).view(1, self.na, 1, 1, 2)
            self._grids[key] = (grid, anchor)
        return self._grids[key]

    def forward(self, xs: list[torch.Tensor]):
        raw = []
        for i, x in enumerate(xs):
            b, _, h, w = x.shape
            raw.append(self.m[i](x).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2)
                       .contiguous())
        if self.training:
            return raw
        return self.decode(raw)

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Raw maps -> (B, N, no): xywh in input pixels, sigmoid objectness and classes."""
        out = []
        for i, p in enumerate(raw):
            b, _, h, w, _ = p.shape
            grid, anchor = self._grid(i, h, w, p.device, p.dtype)
            y = p.sigmoid()
            xy = (y[..., :2] * 2 + grid) * self.stride[i]
            wh = (y[..., 2:4] * 2) ** 2 * anchor
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(b, -1, self.no))
        return torch.cat(out, 1)

    def _apply(self, fn, *args, **kwargs):
        self._grids = {}  # device/dtype moves invalidate cached grids
        return super()._apply(fn, *args, **kwargs)

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        nc, anchors = args[0], args[1]
        if isinstance(anchors, int):
            # placeholder strides; Model replaces them with real ones after its dry run
            anchors = default_anchors([2 ** (3 + i) for i in range(len(ch))], anchors)
        return cls(nc, anchors, ch), 0


@register()
class DetectDFL(Detect):
    """Anchor-free, decoupled YOLO head: per level a box branch predicting the four
    distances (left, top, right, bottom) from the cell centre as ``reg_max``-bin
    distributions (Distribution Focal Loss, Li et al. 2020), and a class branch.

    Faster to train from scratch than the anchor head (no anchor shapes to fit, no separate
    objectness, class scores trained towards box quality); learns with the 'tal' assigner (or 'atss').
    Train mode returns (B, 1, H, W, 4 * reg_max + nc) maps. Eval mode returns the same
    (B, N, 5 + nc) layout as Detect, so NMS, val and detect need no changes: column 4 holds
    the best class score and the class columns are divided by it, so obj * cls is exactly
    the class score and NMS's objectness pre-filter still drops the empty cells.
    YAML args: [nc, reg_max=16, bin width=1.0 grid cells, class branch conv|dw|conv-dw, or a list of one per level]
    (the yolov5*-dfl configs: [nc, reg_max, dfl_bin]; the -lite ones add dw, depthwise-separable class convs;
    -dfl-half [conv-dw, conv-dw, dw]: a full 3x3 then a depthwise-separable one on P3-P4).
    """

    anchor_free = True

    def __init__(self, nc: int, ch: list[int], reg_max: int = REG_MAX, bin_width: float = BIN_WIDTH,
                 cls_branch: str | list[str] = "conv"):
        nn.Module.__init__(self)
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

        self.nc, self.nl, self.na, self.reg_max = nc, len(ch), 1, int(reg_max)
        self.no = nc + 5  # eval-mode output width (Detect's layout)
        self.n_raw = 4 * self.reg_max + nc
        # unused by the loss; kept so checkpoints and tools that read Detect.anchors work
        self.register_buffer("anchors", torch.ones(self.nl, 1, 2))
        self.register_buffer("stride", torch.zeros(self.nl))
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
        self._grids = {}

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

    def forward(self, xs: list[torch.Tensor]):
        raw = []
        for i, x in enumerate(xs):
            y = torch.cat((self.box[i](x), self.cls[i](x)), 1)
            raw.append(y.permute(0, 2, 3, 1).unsqueeze(1))  # (B, 1, H, W, 4R + nc)
        if self.training:
            return raw
        return self.decode(raw)

    def points(self, i: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Cell centres of level i in grid units, (h * w, 2) xy."""
        key = (i, h, w, device, dtype)
        if key not in self._grids:
            self._grids[key] = cell_indices(h, w, device, dtype) + 0.5
        return self._grids[key]

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

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for i, p in enumerate(raw):
            b, _, h, w, _ = p.shape
            p = p.reshape(b, h * w, self.n_raw)
            pt = self.points(i, h, w, p.device, p.dtype)
            d = self.distances(p[..., :4 * self.reg_max])
            xy = (pt + (d[..., 2:] - d[..., :2]) / 2) * self.stride[i]
            wh = (d[..., :2] + d[..., 2:]) * self.stride[i]
            scores = p[..., 4 * self.reg_max:].sigmoid()
            best = scores.amax(-1, keepdim=True)
            out.append(torch.cat((xy, wh, best, scores / best.clamp(min=1e-12)), -1))
        return torch.cat(out, 1)

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        nc = args[0]
        reg_max = int(args[1]) if len(args) > 1 else REG_MAX
        bin_width = args[2] if len(args) > 2 else BIN_WIDTH
        return cls(nc, ch, reg_max, bin_width, args[3] if len(args) > 3 else "conv"), 0
