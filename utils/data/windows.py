"""The window layout over a large image: overlapping size x size windows, the last row and column flush
with the border. One layout for sliced inference (utils/inference/slicing.py) and the offline tiler
(utils/data/tile.py), so that tiles written for training elsewhere are the windows --slice runs."""
from __future__ import annotations

import math

Window = tuple[int, int, int, int]
MAX_WINDOWS = 10_000  # per image: a 20,000 px square at --slice 256 is ~2,500; more means a mistyped flag


def _starts(extent: int, size: int, overlap: float) -> list[int]:
    """Window starts along one axis: evenly spread, first at 0, last at extent - size, neighbours
    overlapping by at least overlap * size (spreading evenly only ever adds overlap)."""
    if extent <= size:
        return [0]
    step = max(1, math.floor(size * (1 - overlap)))
    n = math.ceil((extent - size) / step) + 1
    return [round(i * (extent - size) / (n - 1)) for i in range(n)]


def slice_windows(h: int, w: int, size: int, overlap: float = 0.2) -> list[Window]:
    """(x1, y1, x2, y2) windows, row by row, covering an h x w image: size x size where the image
    allows (an axis shorter than size gives one window of the full extent), the last row and
    column flush with the border, neighbours overlapping by at least overlap * size pixels."""
    if int(size) != size or size < 1:
        raise ValueError(f"slice_windows: size must be a positive int, got {size!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"slice_windows: overlap must be in [0, 1), got {overlap}")
    if h < 1 or w < 1:
        raise ValueError(f"slice_windows: empty image {h}x{w}")
    size = int(size)
    ys, xs = _starts(h, size, overlap), _starts(w, size, overlap)
    if len(ys) * len(xs) > MAX_WINDOWS:
        raise ValueError(f"--slice {size} --overlap {overlap} cuts a {w}x{h} image into {len(ys) * len(xs)} "
                         f"windows (at most {MAX_WINDOWS}): use a larger --slice or a smaller --overlap")
    return [(x, y, min(x + size, w), min(y + size, h)) for y in ys for x in xs]
