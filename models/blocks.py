"""Core YOLOv5 building blocks: convolutions, bottlenecks, CSP stages, pooling, joins."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from models.registry import YamlSpec, register


def autopad(k: int, p: int | None = None, d: int = 1) -> int:
    """'Same' padding for odd kernels, with dilation."""
    if p is None:
        p = d * (k - 1) // 2
    return p


# Activations a block may name (``act``): True is YOLOv5's SiLU, False none; 'mish' is YOLOv4's.
ACTIVATIONS = {"silu": nn.SiLU, "mish": nn.Mish, "relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.1),
               "hardswish": nn.Hardswish}


def make_act(act: bool | str | None = True) -> nn.Module:
    """The activation module for ``act``: True -> SiLU, False/None -> Identity, or a name in ACTIVATIONS."""
    if act is True:
        return nn.SiLU()
    if act is False or act is None:
        return nn.Identity()
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[act]()


@register()
class Conv(YamlSpec, nn.Module):
    """Conv2d + BatchNorm + SiLU. YAML args: [c2, k=1, s=1, p=None, g=1, d=1, act=True]."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None,
                 g: int = 1, d: int = 1, act: bool | str = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        # YOLOv5's BN settings; they matter for reproducing its training dynamics.
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


@register()
class ConvMish(Conv):
    """Conv2d + BatchNorm + Mish (YOLOv4's CSPDarknet53). YAML args as Conv: [c2, k=1, s=1, p=None, g=1, d=1]."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, d: int = 1):
        super().__init__(c1, c2, k, s, p, g, d, act="mish")


@register()
class DWConv(Conv):
    """Depthwise(-style) conv: groups = gcd(c1, c2). YAML args: [c2, k=1, s=1, d=1]."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act: bool | str = True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


@register()
class GroupConv(Conv):
    """Group conv with an explicit group count. YAML args: [c2, k=3, s=1, g=2]."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 2):
        if c1 % g or c2 % g:
            raise ValueError(f"GroupConv: channels {c1}->{c2} not divisible by groups {g}")
        super().__init__(c1, c2, k, s, g=g)


@register()
class DilatedConv(Conv):
    """Dilated 3x3 conv: a wider receptive field at full resolution. YAML: [c2, k=3, d=2]."""

    def __init__(self, c1: int, c2: int, k: int = 3, d: int = 2):
        super().__init__(c1, c2, k, 1, d=d)


@register()
class Bottleneck(YamlSpec, nn.Module):
    """1x1 -> 3x3 with an optional residual. YAML args: [c2, shortcut=True, g=1, e=0.5, act=True]."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 act: bool | str = True):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_, c2, 3, 1, g=g, act=act)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register()
class C3(YamlSpec, nn.Module):
    """CSP stage with three convs. YAML args: [c2, shortcut=True, g=1, e=0.5]."""

    repeats_arg = True

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register()
class BottleneckCSP(YamlSpec, nn.Module):
    """The original CSP bottleneck (YOLOv4/YOLOv5 v1-v5). YAML args: [c2, shortcut=True, g=1, e=0.5,
    act=True]; act='mish' gives YOLOv4's CSPDarknet53 stage."""

    repeats_arg = True

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5, act: bool | str = True):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1, act=act)
        self.bn = nn.BatchNorm2d(2 * c_, eps=1e-3, momentum=0.03)
        self.act = make_act(act)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0, act=act) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


@register()
class SPP(YamlSpec, nn.Module):
    """Spatial pyramid pooling with parallel max-pools. YAML args: [c2, k=(5, 9, 13), act=True]."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (5, 9, 13), act: bool | str = True):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1, act=act)
        self.m = nn.ModuleList(nn.MaxPool2d(x, 1, x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


@register()
class SPPF(YamlSpec, nn.Module):
    """SPP with chained 5x5 pools: same output as SPP(5, 9, 13), fewer FLOPs. YAML: [c2, k=5]."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


@register()
class Concat(nn.Module):
    """Concatenate inputs along channels. YAML args: [dim=1]."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.d = dim

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        return cls(*args), sum(ch)


@register("nn.Upsample")
class Upsample(nn.Upsample):
    """Parameter-free upsampling. YAML args: [size=None, scale_factor=2, mode='nearest']."""

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        return cls(*args), ch[0]
