"""Losses: DetectionLoss for the anchor head, DFLLoss for the anchor-free head, and build_loss to
pick one; utils/loss/common.py holds what they share."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from utils.loss.anchor import DetectionLoss
from utils.loss.common import detect_head
from utils.loss.dfl import DFLLoss


def build_loss(model: nn.Module, hyp: Mapping[str, Any], imgsz: int) -> DetectionLoss | DFLLoss:
    """DFLLoss for an anchor-free head, DetectionLoss (whose objectness gain scales with ``imgsz``) otherwise."""
    if getattr(detect_head(model), "anchor_free", False):
        return DFLLoss(model, hyp)
    return DetectionLoss(model, hyp, imgsz)


__all__ = ["DFLLoss", "DetectionLoss", "build_loss"]
