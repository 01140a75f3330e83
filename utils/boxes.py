"""Box formats and box similarities: the IoU family and the Normalized Wasserstein Distance.

All boxes are in pixels. ``xyxy`` = (x1, y1, x2, y2), ``xywh`` = (cx, cy, w, h).

Pairwise (N x M) IoU/GIoU/DIoU/CIoU come from ``torchvision.ops``. The *aligned* versions
(box i against box i, broadcasting) are written here because torchvision's aligned
functions are losses that index with boolean masks (a host sync on CUDA) and do not
broadcast; the tests check them against the torchvision pairwise diagonal.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.ops as tvops

ArrayLike = torch.Tensor | np.ndarray

# The class of an ignore region (COCO iscrowd=1) in a label row: carried with the boxes so that every
# augmentation moves it, split off by the loss, never an object (docs/ignore-regions.md).
IGNORE_CLASS = -1

# Wang et al. 2021 (NWD) set C to the average absolute object size of AI-TOD, 12.8 px.
NWD_C = 12.8


def _empty_like(x: ArrayLike) -> ArrayLike:
    return x.clone() if isinstance(x, torch.Tensor) else np.copy(x)


def xywh2xyxy(x: ArrayLike) -> ArrayLike:
    """(..., 4) centre-size boxes -> corner boxes; works on tensors and arrays."""
    y = _empty_like(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def xyxy2xywh(x: ArrayLike) -> ArrayLike:
    """(..., 4) corner boxes -> centre-size boxes; works on tensors and arrays."""
    y = _empty_like(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


_PAIRWISE = {
    "iou": tvops.box_iou,
    "giou": tvops.generalized_box_iou,
    "diou": tvops.distance_box_iou,
    "ciou": tvops.complete_box_iou,
}


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str = "iou") -> torch.Tensor:
    """Pairwise (N, M) IoU of xyxy boxes; ``kind`` is iou, giou, diou or ciou."""
    try:
        fn = _PAIRWISE[kind]
    except KeyError:
        raise ValueError(f"unknown IoU kind {kind!r}; choose from {sorted(_PAIRWISE)}") from None
    return fn(boxes1, boxes2)


def aligned_iou(box1: torch.Tensor, box2: torch.Tensor, kind: str = "iou",
                eps: float = 1e-7) -> torch.Tensor:
    """IoU-family similarity of box1[..., i] with box2[..., i] (xyxy, broadcasting).

    ``kind``: iou, giou (Rezatofighi 2019), diou or ciou (Zheng 2020). Returns shape (...).
    """
    if kind not in _PAIRWISE:
        raise ValueError(f"unknown IoU kind {kind!r}; choose from {sorted(_PAIRWISE)}")
    b1x1, b1y1, b1x2, b1y2 = box1.unbind(-1)
    b2x1, b2y1, b2x2, b2y2 = box2.unbind(-1)
    w1, h1 = b1x2 - b1x1, b1y2 - b1y1
    w2, h2 = b2x2 - b2x1, b2y2 - b2y1
    inter = ((torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(min=0)
             * (torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)).clamp(min=0))
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    # smallest enclosing box
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw ** 2 + ch ** 2 + eps  # squared diagonal of the enclosing box
    rho2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    if kind == "diou":
        return iou - rho2 / c2
    # CIoU: aspect-ratio consistency term; alpha is a weight, not a path for gradients
    v = (4 / math.pi ** 2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def wasserstein2(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance between the Gaussians of two xyxy boxes (aligned).

    A box becomes N(centre, diag(w^2/4, h^2/4)); for such diagonal Gaussians
    W2^2 = |c1 - c2|^2 + ((w1 - w2)/2)^2 + ((h1 - h2)/2)^2.
    """
    # (x1+x2)/2 - (x1'+x2')/2 and ((x2-x1) - (x2'-x1'))/2 in one go
    d = box1 - box2
    dc = (d[..., :2] + d[..., 2:]) / 2
    dwh = (d[..., 2:] - d[..., :2]) / 2
    return (dc ** 2).sum(-1) + (dwh ** 2).sum(-1)


def nwd(box1: torch.Tensor, box2: torch.Tensor, c: float = NWD_C,
        eps: float = 1e-7) -> torch.Tensor:
    """Normalized Wasserstein Distance exp(-W2 / C) of xyxy boxes (aligned, broadcasting).

    In (0, 1], 1 for identical boxes; unlike IoU it stays informative for tiny boxes that do
    not overlap. ``c`` is in pixels (Wang et al. 2021 use the mean object size, 12.8 on AI-TOD).
    """
    # eps inside the sqrt keeps the gradient finite for identical boxes
    return torch.exp(-torch.sqrt(wasserstein2(box1, box2) + eps) / c)


def pairwise_nwd(boxes1: torch.Tensor, boxes2: torch.Tensor, c: float = NWD_C) -> torch.Tensor:
    """(N, M) NWD between two sets of xyxy boxes."""
    return nwd(boxes1[:, None, :], boxes2[None, :, :], c)


def wh_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """IoU of boxes sharing a centre, from sizes only: (..., 2) x (..., 2) -> (...) broadcast."""
    inter = torch.min(wh1, wh2).prod(-1)
    return inter / (wh1.prod(-1) + wh2.prod(-1) - inter)
