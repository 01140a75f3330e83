"""The last steps of a training sample in as few passes over its pixels as possible:
HSV gains straight to RGB, and the batch in the channels-last layout the model trains in.

`hsv_to_rgb(img, ...)` equals `augment_hsv(img, ...)` followed by `img[..., ::-1]` (same draws, same
tables, bit for bit): the three per-channel lookups run as one 3-channel LUT, and the conversion
back from HSV writes RGB directly instead of BGR plus a channel-reversing copy.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch


def hsv_tables(r: np.ndarray) -> np.ndarray:
    """(1, 256, 3) uint8 lookup tables for hue, saturation and value gains r (3,), as augment_hsv builds them."""
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)  # OpenCV hue runs 0..179 and wraps
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    return np.stack((lut_h, lut_s, lut_v), 1)[None]


def hsv_to_rgb(img: np.ndarray, rng: np.random.Generator, hgain: float = 0.0, sgain: float = 0.0,
               vgain: float = 0.0) -> np.ndarray:
    """BGR uint8 in, RGB uint8 out (a new array), with random HSV gains when any gain is set.
    A grey (h, w) image stays grey: a pixel with B = G = R has saturation 0 and hue 0, both of which
    the tables keep at 0, so only the value table changes it, the same in all three channels."""
    tables = draw_hsv_tables(rng, hgain, sgain, vgain)
    if tables is None:
        return img.copy() if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 2:
        return cv2.LUT(img, np.ascontiguousarray(tables[:, 2]))
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    cv2.LUT(hsv, tables[None], dst=hsv)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def draw_hsv_tables(rng: np.random.Generator, hgain: float = 0.0, sgain: float = 0.0,
                    vgain: float = 0.0) -> np.ndarray | None:
    """One sample's random HSV gains as (256, 3) tables (hsv_to_rgb's draws); None when no gain is set.
    The loader draws them and hands them to the device when it trains on a GPU (hsv_device.py)."""
    if not (hgain or sgain or vgain):
        return None
    return hsv_tables(rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1)[0]


def stack_chw(imgs: list[torch.Tensor] | tuple, shared: bool = False) -> torch.Tensor:
    """(B, C, H, W) from (C, H, W) images, stored channels-last (NHWC): the layout the trainer
    moves batches to anyway (`.to(memory_format=torch.channels_last)`, a no-op then), and the one
    the images already have when they are views of HWC pixels (`hwc.permute(2, 0, 1)`), so each
    is one plain copy. In shared memory when `shared` (a loader worker's batch travels to the main
    process there: stacking it there saves a copy)."""
    if not len(imgs):
        return torch.zeros((0, 3, 0, 0), dtype=torch.uint8)
    c, h, w = imgs[0].shape
    if any(im.shape != imgs[0].shape or im.dtype != imgs[0].dtype for im in imgs):
        raise ValueError(f"stack_chw: images differ in shape or dtype: {sorted({tuple(im.shape) for im in imgs})}")
    shape = (len(imgs), h, w, c)
    if shared:
        out = imgs[0].new(imgs[0]._typed_storage()._new_shared(len(imgs) * c * h * w)).view(shape)
    else:
        out = torch.empty(shape, dtype=imgs[0].dtype)
    for b, im in enumerate(imgs):
        out[b].copy_(im.permute(1, 2, 0))  # contiguous both sides for HWC views: a memcpy
    return out.permute(0, 3, 1, 2)
