"""Stems and lossless downsampling: Focus, SpaceToDepth (PassThrough), SPDConv.

Small objects live in a handful of pixels; a strided conv throws three quarters of the
positions away. Space-to-depth moves every pixel into channels instead, so the following
non-strided conv still sees all of them (SPD-Conv, Sunkara & Luo 2022).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.blocks import Conv
from models.registry import YamlSpec, make_divisible, register


def space_to_depth(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*s*s, H/s, W/s); channel blocks ordered by (dx, dy) offset."""
    b, c, h, w = x.shape
    if h % scale or w % scale:
        raise ValueError(f"space_to_depth: size {h}x{w} not divisible by {scale}")
    x = x.view(b, c, h // scale, scale, w // scale, scale)
    # (b, dx, dy, c, h', w'): offsets outermost, in the channel order of YOLOv5's Focus slicing.
    x = x.permute(0, 5, 3, 1, 2, 4)
    return x.reshape(b, c * scale * scale, h // scale, w // scale)


def depth_to_space(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """Exact inverse of :func:`space_to_depth`."""
    b, c, h, w = x.shape
    c0 = c // (scale * scale)
    x = x.view(b, scale, scale, c0, h, w).permute(0, 3, 4, 2, 5, 1)
    return x.reshape(b, c0, h * scale, w * scale)


@register("PassThrough")
class SpaceToDepth(nn.Module):
    """Parameter-free space-to-depth (YOLOv2's PassThrough). YAML args: [scale=2]."""

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_depth(x, self.scale)

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        scale = args[0] if args else 2
        return cls(scale), ch[0] * scale * scale


@register()
class Focus(YamlSpec, nn.Module):
    """YOLOv5 v1-v5 stem: space-to-depth then a conv. YAML args: [c2, k=1, s=1, p=None, g=1]."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(space_to_depth(x, 2))


@register()
class SPDConv(YamlSpec, nn.Module):
    """Space-to-depth (scale 2) followed by a non-strided conv: a lossless stride-2 layer.

    YAML args: [c2, k=3]. Drop-in for ``[Conv, [c2, 3, 2]]``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.conv = Conv(c1 * scale * scale, c2, k, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(space_to_depth(x, self.scale))


__all__ = ["SPDConv", "Focus", "SpaceToDepth", "space_to_depth", "depth_to_space",
           "make_divisible"]
