"""Decoding image files to BGR uint8 the same way everywhere: training, val --slice and detect.py."""
from __future__ import annotations

import cv2
import numpy as np

from utils.augment.transforms import PAD_VALUE


def read_image(path: str, special: bool = False, reduce: int = 1) -> np.ndarray:
    """Decode to BGR uint8 (h, w, 3). special: alpha composited on grey, 16-bit/float scaled to
    8 bits. reduce 2/4/8 lets libjpeg decode at a fraction of the size (much faster for large
    photos that will be shrunk anyway). Raises OSError naming the file when it cannot be decoded."""
    if special:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is not None:
            img = _to_bgr8(img)
    else:
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}.get(reduce, cv2.IMREAD_COLOR)
        img = cv2.imread(path, flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise OSError(f"{path}: image could not be read (missing or corrupt)")
    return img


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:  # float images: 0..1 or 0..255
        f = img.astype(np.float32)
        img = np.clip(f * 255 if f.max() <= 1.0 else f, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 2:  # grey + alpha
        img = cv2.merge((img[..., 0], img[..., 0], img[..., 0], img[..., 1]))
    if img.shape[2] == 4:  # transparent areas become the pad grey, not whatever colour they store
        a = img[..., 3:4].astype(np.float32) / 255
        return (img[..., :3] * a + PAD_VALUE * (1 - a) + 0.5).astype(np.uint8)
    return img[..., :3]
