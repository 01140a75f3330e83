"""The HSV gains of a training batch on the device it trains on, pixel for pixel as OpenCV.

The loader's largest cost per sample is the HSV augmentation (finish.hsv_to_rgb: BGR -> HSV, three
lookup tables, HSV -> RGB; ~1.8 ms of ~3.6 ms for a 640 px colour mosaic on one core). On a GPU the
same takes microseconds for a whole batch, so when training on CUDA the loader draws the gains and
builds the tables as before (same random draws), skips the pixel work, and the trainer runs
`apply_hsv_tables` on the uint8 batch after the transfer. Flips commute with a per-pixel map, so
doing it after them changes nothing.

The conversions follow OpenCV's 8-bit ones: RGB -> HSV in fixed point (12-bit reciprocal tables),
HSV -> RGB in float32 from the hexcone sectors, truncated (as its vectorised loop does).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from utils.augment.finish import draw_hsv_tables, hsv_to_rgb

SHIFT = 12  # OpenCV's hsv_shift: fixed-point bits of its reciprocal tables
_SECTORS = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))  # (b, g, r) rows of the value table
CHUNK = 8  # images converted at once
IDENTITY = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)  # (256, 3): a sample without HSV gains


@functools.lru_cache(maxsize=None)  # once per device, not per batch
def _reciprocals(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    i = np.arange(256, dtype=np.float64)
    with np.errstate(divide="ignore"):
        sdiv = np.where(i > 0, np.rint((255 << SHIFT) / i), 0)
        hdiv = np.where(i > 0, np.rint((180 << SHIFT) / (6.0 * i)), 0)
    return (torch.as_tensor(sdiv, dtype=torch.int32, device=device),
            torch.as_tensor(hdiv, dtype=torch.int32, device=device))


@functools.lru_cache(maxsize=None)
def _identity(device: torch.device) -> torch.Tensor:
    return torch.as_tensor(IDENTITY, device=device).long()


def rgb_to_hsv8(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB -> uint8 HSV (hue 0..179), as cv2.cvtColor(..., COLOR_RGB2HSV)."""
    sdiv, hdiv = _reciprocals(rgb.device)
    r, g, b = (c.to(torch.int32) for c in rgb.unbind(1))
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    s = (diff * sdiv[v] + (1 << (SHIFT - 1))) >> SHIFT
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * hdiv[diff] + (1 << (SHIFT - 1))) >> SHIFT
    h = torch.where(h < 0, h + 180, h)
    return torch.stack((h, s, v), 1).to(torch.uint8)


def hsv8_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 HSV (hue 0..179) -> uint8 RGB, as cv2.cvtColor(..., COLOR_HSV2RGB) computes
    it in its vectorised loop (all pixels of rows whose width is a multiple of its vector block): float32
    hexcone values, truncated to integers (its scalar remainder loop rounds instead)."""
    h, s, v = hsv.unbind(1)
    h = h.float() * (6.0 / 180.0)
    s, v = s.float() * (1.0 / 255.0), v.float() * (1.0 / 255.0)
    sector = torch.trunc(h)
    h = h - sector
    # OpenCV's build fuses 1 - s * x into one multiply-add (one rounding): float64 has room for s * x exactly
    s64 = s.double()
    tabs = (v, v * (1.0 - s), v * (1.0 - s64 * h.double()).float(), v * (1.0 - s64 * (1.0 - h).double()).float())
    sector = sector - torch.trunc(sector * (1.0 / 6.0)) * 6.0
    at = [sector == k for k in range(5)]  # sector 5 is what none of these is

    def pick(entries: tuple[int, ...]) -> torch.Tensor:  # one channel: its tab entry in each sector
        out = tabs[entries[5]]
        for k in range(5):
            out = torch.where(at[k], tabs[entries[k]], out)
        return out

    rgb = torch.stack([pick(tuple(row[c] for row in _SECTORS)) for c in (2, 1, 0)], 1)
    return torch.trunc(rgb * 255.0).clamp_(0, 255).to(torch.uint8)


def apply_hsv_tables(rgb: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """HSV gains on a uint8 RGB batch (B, 3, H, W): each image's HSV values through its (256, 3)
    tables (finish.hsv_tables) and back; images whose tables are IDENTITY are left as they are (the
    round trip itself is not lossless). Equals finish.hsv_to_rgb per image where OpenCV converts a whole
    row in its vector loop: rows whose width is a multiple of its block (32 px on this x86 build; training
    samples are imgsz wide, a multiple of 32), and for an OpenCV build that computes as the one tested
    (matches_opencv checks the one at hand)."""
    t = tables.to(device=rgb.device, dtype=torch.long)  # (B, 256, 3)
    todo = (t != _identity(rgb.device)).flatten(1).any(1).nonzero().flatten()
    if not len(todo):
        return rgb
    out = rgb.clone()
    for part in todo.split(CHUNK):  # a few images at a time: the int32 / float64 temporaries stay small
        hsv = rgb_to_hsv8(rgb[part])
        tp = t[part]
        mapped = torch.stack([torch.gather(tp[:, :, c], 1, hsv[:, c].flatten(1).long()).view(hsv[:, c].shape)
                              for c in range(3)], 1).to(torch.uint8)
        out[part] = hsv8_to_rgb(mapped)
    return out


def matches_opencv(device: torch.device | str) -> bool:
    """Whether apply_hsv_tables on device gives this OpenCV's hsv_to_rgb pixels for a few colour images
    with strong gains: the trainer leaves HSV to the device only then."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)  # noise: every hue sector, every level
    ref = np.stack([hsv_to_rgb(im, np.random.default_rng(k), 0.5, 0.9, 0.9) for k, im in enumerate(imgs)])
    tables = np.stack([draw_hsv_tables(np.random.default_rng(k), 0.5, 0.9, 0.9) for k in range(len(imgs))])
    rgb = torch.from_numpy(np.ascontiguousarray(imgs[..., ::-1])).permute(0, 3, 1, 2).to(device)
    out = apply_hsv_tables(rgb, torch.from_numpy(tables).to(device)).permute(0, 2, 3, 1).cpu().numpy()
    return bool(np.array_equal(out, ref))


def batch_tables(metas: tuple | list | None) -> np.ndarray | None:
    """(B, 256, 3) tables of a batch whose loader left the HSV gains to the device (meta 'hsv'),
    IDENTITY for its samples without; None when no sample has them (or the batch has no metas)."""
    if not metas or not any(m and "hsv" in m for m in metas):
        return None
    return np.stack([(m or {}).get("hsv", IDENTITY) for m in metas])
