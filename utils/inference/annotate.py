"""Drawing detections on full-resolution images and cutting out their crops (detect.py).
cv2 primitives only (Hershey font), colours from the shared palette of utils/plots/colors.py."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from utils.plots.colors import FONT, color
from utils.paths import class_dirs, safe_name
from utils.text import display_text


def line_width(shape: Sequence[int]) -> int:
    """Box line width that stays visible on large images: ~0.3% of the mean side, at least 2."""
    return max(round((shape[0] + shape[1]) / 2 * 0.003), 2)


def _np(det: torch.Tensor | np.ndarray) -> np.ndarray:
    d = det.detach().cpu().numpy() if isinstance(det, torch.Tensor) else np.asarray(det)
    return d.reshape(-1, 6)


def label_text(cls: int, conf: float, names: Sequence[str], hide_labels: bool = False,
               hide_conf: bool = False) -> str:
    """'name 0.87', 'name', '0.87' or '' following the hide flags."""
    if hide_labels:
        return ""
    name = display_text(names[cls]) if 0 <= cls < len(names) else str(cls)  # one line: cv2 draws no newline
    return name if hide_conf else f"{name} {conf:.2f}"


def draw_detections(img: np.ndarray, det: torch.Tensor | np.ndarray, names: Sequence[str],
                    line_thickness: int | None = None, hide_labels: bool = False,
                    hide_conf: bool = False) -> np.ndarray:
    """Draw (n, 6) [x1, y1, x2, y2, conf, cls] boxes on a BGR image in place (returned too):
    a class-coloured box and a filled label above it (below when the box touches the top)."""
    lw = line_thickness or line_width(img.shape)
    scale, tf = lw / 3, max(lw - 1, 1)
    h = img.shape[0]
    for x1, y1, x2, y2, conf, cls in _np(det)[::-1].tolist():  # lowest confidence first: best drawn on top
        c = color(int(cls))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(img, p1, p2, c, lw, cv2.LINE_AA)
        label = label_text(int(cls), conf, names, hide_labels, hide_conf)
        if not label:
            continue
        (tw, th), base = cv2.getTextSize(label, FONT, scale, tf)
        above = p1[1] - th - base - 3 >= 0
        top = p1[1] - th - base - 3 if above else min(p1[1], h - th - base - 3)
        cv2.rectangle(img, (p1[0], top), (p1[0] + tw + 2, top + th + base + 3), c, -1, cv2.LINE_AA)
        cv2.putText(img, label, (p1[0] + 1, top + th + 1), FONT, scale, (255, 255, 255), tf, cv2.LINE_AA)
    return img


def crop_box(img: np.ndarray, xyxy: Sequence[float]) -> np.ndarray:
    """The pixels a box covers (outward to whole pixels, clipped to the image, at least 1 px)."""
    h, w = img.shape[:2]
    x1, y1 = int(np.clip(np.floor(xyxy[0]), 0, w - 1)), int(np.clip(np.floor(xyxy[1]), 0, h - 1))
    x2, y2 = int(np.clip(np.ceil(xyxy[2]), x1 + 1, w)), int(np.clip(np.ceil(xyxy[3]), y1 + 1, h))
    return img[y1:y2, x1:x2]


@functools.lru_cache(maxsize=8)
def _class_dirs(names: tuple[str, ...]) -> list[str]:
    return class_dirs(names)  # once per model, not per frame


def save_crops(img: np.ndarray, det: torch.Tensor | np.ndarray, names: Sequence[str], crop_dir: str | Path,
               stem: str) -> list[Path]:
    """Write each detection's crop of the (undrawn) image to crop_dir/<class folder>/<stem>_<k>.jpg,
    k being the detection's row in det; returns the paths in row order. Class folders: utils/paths.class_dirs
    (class names come from data: one safe, distinct folder per class)."""
    out = []
    dirs = _class_dirs(tuple(names))
    for k, (*xyxy, _, cls) in enumerate(_np(det).tolist()):
        folder = dirs[int(cls)] if 0 <= int(cls) < len(dirs) else str(int(cls))
        path = Path(crop_dir) / folder / f"{safe_name(stem)}_{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), crop_box(img, xyxy)):
            raise OSError(f"{path}: cv2 could not write the crop")
        out.append(path)
    return out
