"""The shared class palette, for cv2 drawing (BGR) and matplotlib figures (RGB floats), and the cv2 font.
Kept free of matplotlib so detect.py's drawing does not pay its import."""
from __future__ import annotations

import cv2

FONT = cv2.FONT_HERSHEY_SIMPLEX
# Okabe-Ito palette (BGR) then a few extras: distinguishable for most colour-vision types
PALETTE = [(178, 114, 0), (0, 94, 213), (115, 158, 0), (167, 121, 204), (233, 180, 86),
           (66, 228, 240), (0, 159, 230), (60, 60, 60), (40, 40, 200), (200, 40, 40)]
Color = tuple[int, int, int]


def color(i: int) -> Color:
    """The i-th palette colour as cv2 BGR (cycles)."""
    return PALETTE[i % len(PALETTE)]


def mpl_color(i: int) -> tuple[float, float, float]:
    """The same i-th palette colour as a matplotlib RGB tuple in [0, 1]."""
    b, g, r = color(i)
    return r / 255, g / 255, b / 255
