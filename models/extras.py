"""Building blocks from the small-object literature, offered as YAML modules.

SE attention, ASPP, deformable conv, MBConv, dense blocks (with DenseNet's average-pool
transition) and transposed-conv upsampling. (Dilated and group convs live in blocks.py beside
Conv, since they are Conv with one knob.)
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.utils.flop_counter import register_flop_formula
from torchvision.ops import DeformConv2d

from models.blocks import Conv
from models.registry import SameChannels, YamlSpec, make_divisible, register


@register_flop_formula(torch.ops.torchvision.deform_conv2d)
def _deform_conv2d_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's FlopCounterMode knows no torchvision ops and would count DeformConv as 0 FLOPs:
    count it as the dense conv of the same shape (2 x multiply-adds); the bilinear sampling of
    the input (~4 reads per tap and input channel) is left out, as for any conv's im2col."""
    return 2 * math.prod(out_shape) * math.prod(w_shape[1:])


@register()
class SE(SameChannels, nn.Module):
    """Squeeze-and-excitation channel attention (Hu et al. 2018). YAML args: [r=16]."""

    def __init__(self, c1: int, r: int = 16, c_min: int = 8):
        super().__init__()
        c_ = max(c1 // r, c_min)
        self.fc1 = nn.Conv2d(c1, c_, 1)
        self.fc2 = nn.Conv2d(c_, c1, 1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(w))))


@register()
class ASPP(YamlSpec, nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3): parallel dilated 3x3 convs plus
    global context, fused by a 1x1 conv. YAML args: [c2, rates=(1, 2, 3)] — small rates,
    since at stride 32 a rate of 6 already spans the whole of a 640 px feature map."""

    def __init__(self, c1: int, c2: int, rates: tuple[int, ...] = (1, 2, 3)):
        super().__init__()
        c_ = c1 // 2
        self.branches = nn.ModuleList(
            Conv(c1, c_, 1) if r == 1 else Conv(c1, c_, 3, d=r) for r in rates)
        # no BatchNorm on the pooled 1x1 map: in training it has one value per channel and
        # image, so BN fails at batch 1 (Model's stride dry run, batch-1 training) and is noisy above
        self.pool = nn.Sequential(nn.Conv2d(c1, c_, 1), nn.SiLU())
        self.project = Conv(c_ * (len(rates) + 1), c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.pool(x.mean((2, 3), keepdim=True)).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [g], 1))


@register()
class DeformConv(YamlSpec, nn.Module):
    """Deformable conv v1 (Dai et al. 2017) with a learned offset branch, + BN + SiLU.

    YAML args: [c2, k=3, s=1]. Offsets start at zero so it begins as a plain conv.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1):
        super().__init__()
        p = k // 2
        self.offset = nn.Conv2d(c1, 2 * k * k, k, s, p)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(c1, c2, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, self.offset(x))))


@register()
class MBConv(YamlSpec, nn.Module):
    """Inverted residual with SE (MobileNetV2 / EfficientNet): 1x1 expand, depthwise kxk,
    SE, linear 1x1 project. YAML args: [c2, k=3, s=1, expand=4, se_ratio=0.25]."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, expand: int = 4,
                 se_ratio: float = 0.25):
        super().__init__()
        c_ = c1 * expand
        self.expand = Conv(c1, c_, 1) if expand != 1 else nn.Identity()
        self.dw = Conv(c_, c_, k, s, g=c_)
        # SE width follows the block's *input* width, as in EfficientNet.
        self.se = SE(c_, r=max(1, round(c_ / max(1, int(c1 * se_ratio)))), c_min=1) \
            if se_ratio > 0 else nn.Identity()
        self.project = Conv(c_, c2, 1, act=False)
        self.add = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.add else y

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        # An EfficientNet stage of n blocks strides (and changes width) in its first block only;
        # the default contract would repeat the stride in every block.
        c2 = make_divisible(args[0] * width, 8)
        rest = list(args[1:])
        first = cls(ch[0], c2, *rest)
        if n == 1:
            return first, c2
        later = [rest[0], 1, *rest[2:]] if len(rest) >= 2 else rest
        return nn.Sequential(first, *(cls(c2, c2, *later) for _ in range(n - 1))), c2


class _DenseLayer(nn.Module):
    def __init__(self, c1: int, growth: int, bottleneck: int = 4):
        super().__init__()
        self.cv1 = Conv(c1, bottleneck * growth, 1)
        self.cv2 = Conv(bottleneck * growth, growth, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.cv2(self.cv1(x))), 1)


@register()
class DenseBlock(YamlSpec, nn.Module):
    """DenseNet block (Huang et al. 2017): n layers each adding ``growth`` channels, then a
    1x1 transition to c2. YAML args: [c2, growth=32]; the YAML repeat count is n."""

    repeats_arg = True

    def __init__(self, c1: int, c2: int, n: int = 4, growth: int = 32):
        super().__init__()
        self.m = nn.Sequential(*(_DenseLayer(c1 + i * growth, growth) for i in range(n)))
        self.transition = Conv(c1 + n * growth, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transition(self.m(x))

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        # growth is a width too: scale it with width_multiple (as c2), so that a YAML written with
        # DenseNet's growth of 32 keeps its proportions at every scale (8 at n, 16 at s)
        c2 = make_divisible(args[0] * width, 8)
        growth = make_divisible((args[1] if len(args) > 1 else 32) * width, 8)
        return cls(ch[0], c2, n, growth, *args[2:]), c2


@register()
class AvgPool(SameChannels, nn.Module):
    """k x k average pooling with stride k: DenseNet's transition downsampling (after the 1x1
    compression, which DenseBlock ends with). Parameter-free. YAML args: [k=2]."""

    def __init__(self, c1: int, k: int = 2):
        super().__init__()
        self.pool = nn.AvgPool2d(k, k, ceil_mode=True)  # ceil: odd sizes keep YOLO's H/stride rounding up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


@register()
class ConvTranspose(YamlSpec, nn.Module):
    """Learned 2x upsampling: ConvTranspose2d(k=2, s=2) + BN + SiLU. YAML args: [c2, k=2, s=2]."""

    def __init__(self, c1: int, c2: int, k: int = 2, s: int = 2):
        super().__init__()
        self.conv = nn.ConvTranspose2d(c1, c2, k, s, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
