"""Name -> class registry used by the YAML parser.

Every module that may appear in a model YAML registers itself here and says, through
``from_yaml``, how its constructor arguments and output channels follow from the input
channels and the YAML args. The parser therefore needs no per-module branches.
"""
from __future__ import annotations

import math
from typing import Callable

import torch.nn as nn

REGISTRY: dict[str, type[nn.Module]] = {}


def register(*names: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a module available to YAML under its class name (and aliases)."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        for name in (cls.__name__, *names):
            if name in REGISTRY and REGISTRY[name] is not cls:
                raise KeyError(f"module name {name!r} registered twice")
            REGISTRY[name] = cls
        return cls

    return wrap


def make_divisible(x: float, divisor: int = 8) -> int:
    """Round channels up to a multiple of ``divisor`` (YOLOv5's width rule)."""
    return int(math.ceil(x / divisor) * divisor)


class YamlSpec:
    """Mixin with the default YAML contract shared by conv-like modules.

    YAML args are ``[c2, *rest]``: the first arg is the output width before
    ``width_multiple`` is applied. ``repeats_arg`` modules take the (depth-scaled)
    repeat count as their third constructor argument instead of being stacked.
    """

    repeats_arg = False

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        c1 = ch[0]
        c2 = make_divisible(args[0] * width, 8)
        rest = list(args[1:])
        if cls.repeats_arg:
            return cls(c1, c2, n, *rest), c2
        if n == 1:
            return cls(c1, c2, *rest), c2
        layers = [cls(c1, c2, *rest)] + [cls(c2, c2, *rest) for _ in range(n - 1)]
        return nn.Sequential(*layers), c2


class SameChannels:
    """Mixin for modules whose output width equals their input width (args passed as-is)."""

    @classmethod
    def from_yaml(cls, ch: list[int], args: list, n: int, width: float) -> tuple[nn.Module, int]:
        layers = [cls(ch[0], *args) for _ in range(n)]
        return (layers[0] if n == 1 else nn.Sequential(*layers)), ch[0]
