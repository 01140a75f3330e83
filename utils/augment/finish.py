"""The last steps of a training sample in as few passes over its pixels as possible:
HSV gains straight to RGB, and the RGB HWC -> CHW layout the model takes.

`hsv_to_rgb(img, ...)` equals `augment_hsv(img, ...)` followed by `img[..., ::-1]` (same draws, same
tables, bit for bit): the three per-channel lookups run as one 3-channel LUT, and the conversion
back from HSV writes RGB directly instead of BGR plus a channel-reversing copy.
"""
from __future__ import annotations

import cv2
import numpy as np


def hsv_tables(r: np.ndarray) -> np.ndarray:
    """(1, 256, 3) uint8 lookup tables for hue, saturation and value gains r (3,), as augment_hsv builds them."""
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)  # OpenCV hue runs 0..179 and wraps
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    return np.stack((lut_h, lut_s, lut_v), 1)[None]


def hsv_to_rgb(img: np.ndarray, rng: np.random.Generator, hgain: float = 0.0, sgain: float = 0.0,
               vgain: float = 0.0) -> np.ndarray:
    """BGR uint8 in, RGB uint8 out (a new array), with random HSV gains when any gain is set."""
    if not (hgain or sgain or vgain):
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    cv2.LUT(hsv, hsv_tables(r), dst=hsv)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def to_chw(img: np.ndarray) -> np.ndarray:
    """(H, W, C) -> contiguous (C, H, W), one plane at a time (faster than a transposed copy)."""
    out = np.empty((img.shape[2], *img.shape[:2]), img.dtype)
    for c in range(img.shape[2]):
        out[c] = img[..., c]
    return out
