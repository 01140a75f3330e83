"""Decoding image files to BGR uint8 the same way everywhere: training, val (--slice too), detect.py and the
data checker.

Orientation: images are read as viewers and labelling tools show them, with the EXIF Orientation tag
applied (a phone photo stored 96x128 with Orientation 6 is shown, labelled and read 128x96). OpenCV
decodes with the tag ignored and `orient` applies it, so that the pixels and the header size the data
checker reports (`shown_size`) come from one reading of the tag. TIFF is the exception: OpenCV's TIFF
decoder orients by itself (and cannot decode orientations 5-8), so the tag is not applied twice.

High bit depths (16-bit and 32-bit integer frames, float frames; docs/bit_depth.md): scaled to 8 bits as the
data YAML's `bit_depth` says (utils/data/config.py owns the setting):
  auto     integers: shifted right by (bits the frame's maximum needs - 8), so a 10-bit infrared frame
           (0..1023) uses the whole 8-bit range and a full 16-bit frame is v >> 8; floats in 0..1 are
           x255, in 0..255 kept, others stretched min..max
  9..16    every frame shifted by (bit_depth - 8): one scale for the whole data set, values above are clipped
  minmax   every frame stretched from its own minimum to its maximum
A conversion that loses the signal (a frame spanning 16 or more levels that comes out spanning fewer, or
clipped values) is warned about, naming the file; the data checker lists such frames as problems.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from utils.augment.transforms import PAD_VALUE
from utils.logger import LOG

ORIENTATION_TAG = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # orientations that turn the image by 90 degrees
BIT_DEPTH_MODES = ("auto", "minmax")  # or a whole number 9..16
MAX_WARNINGS = 20  # per process: a data set of dark frames says so, without a line per frame
_warned: set[str] = set()


def exif_orientation(im: Any) -> int:
    """The EXIF Orientation (1-8, 1 = as stored) that read_image applies, from an open PIL image (header
    only: for PNG the eXIf chunk is used when it comes before the pixels, as PIL reads it without decoding)."""
    try:
        if im.format == "TIFF":  # OpenCV's TIFF decoder applies it itself
            return 1
        if im.format == "PNG":
            raw = im.info.get("exif")
            if not raw:
                return 1
            from PIL import Image
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = im.getexif()
        o = int(exif.get(ORIENTATION_TAG, 1))
    except Exception:  # a malformed EXIF block: the image as stored
        return 1
    return o if 1 <= o <= 8 else 1


def shown_size(im: Any) -> tuple[int, int]:
    """(width, height) of an open PIL image as shown (and as read_image returns it): its header size with
    the EXIF orientation applied."""
    w, h = im.size
    return (h, w) if exif_orientation(im) in SWAPS_SIDES else (w, h)


def header_mode(im: Any) -> str:
    """An open PIL image's mode, with ';16' added for 16-bit colour ('RGB;16'): PIL opens those as 8-bit
    'RGB', but they need read_image's special path to be scaled by bit_depth."""
    if im.mode in ("RGB", "RGBA"):
        for t in getattr(im, "tile", None) or ():
            args = t[3] if isinstance(t, tuple) and len(t) > 3 else getattr(t, "args", None)
            raw = args[0] if isinstance(args, tuple) and args else args
            if isinstance(raw, str) and ";16" in raw:
                return f"{im.mode};16"
    return im.mode


def file_orientation(path: str) -> int:
    """exif_orientation of a file; 1 when PIL cannot open it (OpenCV may still decode it as stored)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return exif_orientation(im)
    except Exception:
        return 1


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels -> shown pixels for an EXIF orientation 1-8 (as PIL's ImageOps.exif_transpose)."""
    if orientation == 2:
        return np.ascontiguousarray(img[:, ::-1])
    if orientation == 3:
        return cv2.rotate(img, cv2.ROTATE_180)
    if orientation == 4:
        return np.ascontiguousarray(img[::-1])
    if orientation == 5:  # transpose
        return np.ascontiguousarray(np.swapaxes(img, 0, 1))
    if orientation == 6:
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:  # transverse
        return np.ascontiguousarray(np.swapaxes(img, 0, 1)[::-1, ::-1])
    if orientation == 8:
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


def read_image(path: str, special: bool = False, reduce: int = 1, orientation: int | None = None,
               bit_depth: int | str = "auto", gray: bool = False) -> np.ndarray:
    """Decode to BGR uint8 (h, w, 3) as shown (EXIF orientation applied). special: alpha composited on grey,
    16-bit/float scaled to 8 bits by bit_depth (see the module doc). reduce 2/4/8 lets libjpeg decode at a
    fraction of the size (much faster for large photos that will be shrunk anyway). orientation: the file's
    EXIF orientation when the caller knows it (the dataset read it with the header); None reads it.
    gray: the file holds one channel (its header says so): return it as (h, w), the values each BGR channel
    would have had. Raises OSError naming the file when it cannot be decoded."""
    if special:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is not None:
            img, problem = to_bgr8(img, bit_depth, keep_gray=gray)
            if problem:
                warn_once(path, problem)
    else:
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}.get(reduce, cv2.IMREAD_COLOR)
        if gray:
            flag = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                    8: cv2.IMREAD_REDUCED_GRAYSCALE_8}.get(reduce, cv2.IMREAD_GRAYSCALE)
        img = cv2.imread(path, flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise OSError(f"{path}: image could not be read (missing or corrupt)")
    return orient(img, file_orientation(path) if orientation is None else orientation)


def warn_once(path: str, problem: str) -> None:
    if path in _warned or len(_warned) > MAX_WARNINGS:
        return
    _warned.add(path)
    more = "; further such warnings are not shown" if len(_warned) > MAX_WARNINGS else ""
    LOG.warning(f"WARNING {path}: {problem} (set bit_depth in the data YAML, docs/bit_depth.md){more}")


def _scale_int(img: np.ndarray, bit_depth: int | str) -> tuple[np.ndarray, str]:
    top = int(img.max()) if img.size else 0
    if bit_depth == "auto":
        shift = max(max(top, 0).bit_length() - 8, 0)
    else:
        shift = int(bit_depth) - 8
    out = np.clip(img.astype(np.int64) >> shift, 0, 255).astype(np.uint8)
    if bit_depth != "auto" and top >= 1 << int(bit_depth):
        return out, f"values up to {top} exceed bit_depth {bit_depth} (max {(1 << int(bit_depth)) - 1}): clipped"
    return out, ""


def to_bgr8(img: np.ndarray, bit_depth: int | str = "auto", keep_gray: bool = False) -> tuple[np.ndarray, str]:
    """Any decoded frame (grey, grey+alpha, BGR, BGRA; 8/16/32-bit integer or float) -> (BGR uint8, problem),
    problem being '' or what the conversion lost (see _lost; clipped values). bit_depth: 'auto', 'minmax'
    or 9..16 (the module doc says how each scales). keep_gray: a one-channel frame stays (h, w)."""
    problem = ""
    if img.dtype != np.uint8:
        alpha = img.ndim == 3 and img.shape[2] in (2, 4)
        colour = img[..., :-1] if alpha else img
        if np.issubdtype(img.dtype, np.floating):
            f = np.nan_to_num(colour.astype(np.float64))
            lo, hi = (float(f.min()), float(f.max())) if f.size else (0.0, 0.0)
            if bit_depth == "minmax" or (bit_depth == "auto" and (lo < 0 or hi > 255)):
                colour8 = _stretch(f)
            else:  # 0..1 or 0..255, or a fixed bit depth
                f = f * 255 if bit_depth == "auto" and hi <= 1 else f
                f = f / ((1 << int(bit_depth)) - 1) * 255 if bit_depth != "auto" else f
                colour8 = np.clip(np.round(f), 0, 255).astype(np.uint8)
        elif bit_depth == "minmax":
            colour8 = _stretch(colour.astype(np.float64))
        else:
            colour8, problem = _scale_int(colour, bit_depth)
        problem = problem or _lost(colour, colour8)
        if alpha:  # the alpha of a high-depth image: its own type's full range
            a = img[..., -1:].astype(np.float64)
            a8 = np.clip(np.round(a * (255.0 / (np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer)
                                                else 1.0))), 0, 255).astype(np.uint8)
            img = np.concatenate([colour8, a8], axis=2)
        else:
            img = colour8
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return (img if keep_gray else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)), problem
    if img.shape[2] == 2:  # grey + alpha
        img = cv2.merge((img[..., 0], img[..., 0], img[..., 0], img[..., 1]))
    if img.shape[2] == 4:  # transparent areas become the pad grey, not whatever colour they store
        a = img[..., 3:4].astype(np.float32) / 255
        return (img[..., :3] * a + PAD_VALUE * (1 - a) + 0.5).astype(np.uint8), problem
    return img[..., :3], problem


def _stretch(f: np.ndarray) -> np.ndarray:
    lo, hi = (float(f.min()), float(f.max())) if f.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(f.shape, np.uint8)
    return np.round((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _lost(before: np.ndarray, after: np.ndarray) -> str:
    """What a conversion to 8 bits destroyed: a frame whose values span 16 or more levels that came out
    spanning fewer (a 10-bit frame shifted by 8 bits is 0..3: black)."""
    if not before.size:
        return ""
    lo, hi = float(np.nanmin(before)), float(np.nanmax(before))
    a, b = int(after.min()), int(after.max())
    if hi - lo >= 16 and b - a < 16:
        return f"values {lo:g}..{hi:g} became {a}..{b} of 0..255 in 8 bits: the image's contrast is lost"
    return ""
