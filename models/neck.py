"""ASFF: adaptively spatial feature fusion (Liu, Huang & Wang 2019).

Each output level resizes every input level to its own resolution and width, then mixes
them with per-pixel softmax weights, so a tiny object's strongest level can dominate
where it is rather than everywhere.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks import Conv
from models.registry import register


class _Resize(nn.Module):
    """Bring one level to the target's width and resolution (factor = target/source stride)."""

    def __init__(self, c1: int, c2: int, factor: float):
        super().__init__()
        self.factor = factor
        if factor > 1:  # downsample: a stride-2 conv, then max-pool for the rest of the way
            extra = int(math.log2(factor)) - 1
            layers: list[nn.Module] = [Conv(c1, c2, 3, 2)]
            if extra:
                k = 2 ** extra
                layers.append(nn.MaxPool2d(k, k))
            self.m = nn.Sequential(*layers)
        else:
            self.m = Conv(c1, c2, 1) if c1 != c2 else nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.m(x)
        if self.factor < 1:
            x = F.interpolate(x, size=size, mode="nearest")
        return x


@register()
class ASFF(nn.Module):
    """Fuse all input levels into the one at index ``level``.

    YAML: ``[[p3, p4, p5], 1, ASFF, [level]]`` with inputs ordered from fine to coarse.
    Output width is the input width of that level, so it works under any width_multiple.
    """

    def __init__(self, ch: list[int], level: int, c_w: int = 8):
        super().__init__()
        if not 0 <= level < len(ch):
            raise ValueError(f"ASFF level {level} out of range for {len(ch)} inputs")
        self.level = level
        c = ch[level]
        self.resize = nn.ModuleList(
            _Resize(ci, c, 2.0 ** (level - i)) for i, ci in enumerate(ch))
        self.weight = nn.ModuleList(Conv(c, c_w, 1) for _ in ch)
        self.weight_levels = nn.Conv2d(c_w * len(ch), len(ch), 1)
        self.out = Conv(c, c, 3)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        size = xs[self.level].shape[2:]
        feats = [r(x, size) for r, x in zip(self.resize, xs)]
        w = self.weight_levels(torch.cat([m(f) for m, f in zip(self.weight, feats)], 1))
        w = w.softmax(1)
        fused = sum(f * w[:, i:i + 1] for i, f in enumerate(feats))
        return self.out(fused)

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        level = args[0]
        if not 0 <= level < len(ch):
            raise ValueError(f"ASFF level {level} out of range for {len(ch)} inputs")
        return cls(ch, *args), ch[level]
